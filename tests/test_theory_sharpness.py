"""particles.theory.sharpness: dense and matrix-free paths against jax.hessian and each other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import particles
from particles import theory as T


def _w_hessian_max(problem, W):
    d = W.shape[0]
    H = jax.jit(jax.hessian(particles.weight_loss))(W, problem).reshape(d * d, d * d)
    return np.linalg.eigvalsh(np.asarray(H))[-1]


@pytest.mark.parametrize("N,M,d", [(5, 4, 3), (3, 3, 6)])
def test_dense_and_lanczos_match_autodiff_hessian(N, M, d):
    key = jax.random.PRNGKey(N * 100 + d)
    prob = particles.random_sphere(key, N, M, d)
    W = 2.0 * jax.random.normal(jax.random.fold_in(key, 1), (d, d))
    S = particles.weight_scores(prob, W)
    ref = _w_hessian_max(prob, W)
    grams = particles.Problem.from_grams(prob.G_E, prob.G_U, prob.p, prob.targets, S0=S)
    for p_, method in ((prob, "dense"), (prob, "lanczos"), (grams, "dense"), (grams, "lanczos")):
        got = float(T.sharpness(p_, S, method=method))
        assert abs(got / ref - 1) <= 1e-8, f"{method} (E given: {p_.E is not None}): {got} vs {ref}"


def test_lanczos_restarts_on_larger_problem():
    # N M = 144 > iters = 32: needs restarted Lanczos to reach the dense value.
    key = jax.random.PRNGKey(7)
    prob = particles.random_sphere(key, 12, 12, 5)
    S = 3.0 * jax.random.normal(key, (12, 12))
    dense = float(T.sharpness(prob, S, method="dense"))
    lanczos = float(T.sharpness(prob, S, method="lanczos"))
    assert abs(lanczos / dense - 1) <= 1e-8, (lanczos, dense)


def test_orthogonal_problem_without_factors():
    # Block-diagonal Hessian: lambda_max = max_x p_x lambda_max(diag(P_x) - P_x P_x^T).
    p = np.asarray(particles.zipf(5, 1.0))
    S = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (5, 3)))
    P = np.exp(S) / np.exp(S).sum(1, keepdims=True)
    ref = max(p[x] * np.linalg.eigvalsh(np.diag(P[x]) - np.outer(P[x], P[x]))[-1] for x in range(5))
    prob = particles.orthogonal(p, M=3)
    for method in ("dense", "lanczos"):
        assert abs(float(T.sharpness(prob, S, method=method)) / ref - 1) <= 1e-10


def test_vmap_over_trajectory_scores_and_two_class_form():
    prob = particles.two_particles(0.95, 0.75)
    traj = particles.gd(prob, 10.0, 20, save_scores=True)
    lam = T.sharpness(prob, traj.scores)
    assert lam.shape == (21,)
    one = np.array([float(T.sharpness(prob, s)) for s in traj.scores[::5]])
    assert np.max(np.abs(lam[::5] - one)) <= 1e-14
    lz = np.asarray(T.sharpness(prob, traj.scores, method="lanczos"))
    assert np.max(np.abs(lz / lam - 1)) <= 1e-8
    assert np.max(np.abs(T.two_class_sharpness(prob, traj.scores) - lam)) <= 1e-12
    assert abs(lam[0] - T.two_particles_sharpness0(0.95, 0.75)) <= 1e-14
    ratio = T.stability_ratio(prob, traj.scores, 10.0)
    assert np.max(np.abs(ratio - 10.0 * lam / 2)) <= 1e-14


def test_bad_inputs_raise():
    prob = particles.two_particles(0.5, 0.75)
    with pytest.raises(ValueError, match="method='power'"):
        T.sharpness(prob, jnp.zeros((2, 2)), method="power")
    with pytest.raises(ValueError, match="S has shape"):
        T.sharpness(prob, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="lr="):
        T.stability_ratio(prob, jnp.zeros((2, 2)), -1.0)
    with pytest.raises(ValueError, match="M=3"):
        T.two_class_sharpness(particles.orthogonal(np.ones(3) / 3), jnp.zeros((3, 3)))
