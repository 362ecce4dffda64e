"""particles.theory solvers: max-margin W, CE minimizer, best 0-1 loss (paper-notes §3.2, §3.4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import particles
from particles import theory as T


def _circle_problem(N, seed, a=1.0):
    th = np.asarray(jax.random.uniform(jax.random.PRNGKey(seed), (N,))) * 2 * np.pi
    E = np.stack([np.cos(th), np.sin(th)], 1)
    return particles.Problem.from_embeddings(E, np.eye(2), particles.zipf(N, a), np.arange(N) % 2)


# ------------------------------------------------------------------ max margin
def test_max_margin_closed_forms():
    for N, M in ((5, 2), (4, 10), (7, 3)):
        mm = T.max_margin(particles.orthogonal(particles.zipf(N, 1.0), M))
        assert abs(float(mm.norm2) - N * (M - 1) / M) <= 1e-10, (N, M, float(mm.norm2))
        assert mm.W is None  # no embeddings stored for orthogonal problems
    for corr in (0.5, -0.5, 0.95):
        mm = T.max_margin(particles.two_particles(corr, 0.75))
        assert abs(float(mm.norm2) - 1 / (1 - corr)) <= 1e-10
        assert abs(float(jnp.sum(mm.W**2)) - 1 / (1 - corr)) <= 1e-10


def test_max_margin_kkt_and_independent_solver():
    prob = particles.random_sphere(jax.random.PRNGKey(0), 5, 3, 6)
    mm = T.max_margin(prob)
    E, U, W = np.asarray(prob.E), np.asarray(prob.U), np.asarray(mm.W)
    f = np.asarray(prob.targets)
    lam = np.asarray(mm.dual)
    marg = np.stack([(U[f[x]] - U) @ W @ E[x] for x in range(5)])  # (N, M), 0 at f*(x)
    other = np.arange(3)[None, :] != f[:, None]
    # KKT certificate, checked in W-space from E and U: feasibility, dual feasibility,
    # complementary slackness, stationarity W = sum lambda (u_f - u_y) e_x^T.
    assert marg[other].min() >= 1 - 1e-9
    assert lam.min() >= 0 and np.abs(lam[other] * (marg[other] - 1)).max() <= 1e-9
    W_kkt = sum(lam[x, y] * np.outer(U[f[x]] - U[y], E[x]) for x in range(5) for y in range(3))
    assert np.abs(W_kkt - W).max() <= 1e-9
    assert abs(float(mm.norm2) - (W**2).sum()) <= 1e-10 and abs(lam.sum() - float(mm.norm2)) <= 1e-9
    # An independent solver: SLSQP on the d x d weights.
    cons = [{"type": "ineq", "fun": (lambda w, x=x, y=y: (U[f[x]] - U[y]) @ w.reshape(6, 6) @ E[x] - 1)}
            for x in range(5) for y in range(3) if y != f[x]]
    res = scipy.optimize.minimize(lambda w: w @ w, np.zeros(36), jac=lambda w: 2 * w, constraints=cons,
                                  method="SLSQP", options=dict(ftol=1e-14, maxiter=500))
    assert res.success and abs(res.fun - float(mm.norm2)) <= 1e-6 * res.fun
    # The Gram-only problem gives the same norm.
    grams = particles.Problem.from_grams(prob.G_E, prob.G_U, prob.p, prob.targets)
    assert abs(float(T.max_margin(grams).norm2) - float(mm.norm2)) <= 1e-9


def test_loss_rate_prediction_along_the_flow():
    # L(W_t) t -> ||W_mm||^2; equicorrelated inputs (all constraints active), t = 1e8.
    prob = particles.equicorrelated(4, 0.3, m=2)
    mm = T.max_margin(prob)
    t1 = 1e8
    traj = particles.flow(prob, t1, ts=np.array([0.0, t1]), rtol=1e-10, atol=1e-10)
    rel = abs(float(traj.loss[-1] / T.separable_loss_asymptote(mm.norm2, t1)) - 1)
    assert rel <= 1e-3, f"L t / ||W_mm||^2 - 1 = {rel:.3g} at t = 1e8"


def test_max_margin_rejects_non_separable():
    with pytest.raises(ValueError, match="not separable"):
        T.max_margin(_circle_problem(30, 1))


# ---------------------------------------------------------------- CE minimizer
def test_ce_minimizer_gradient_and_fixed_point():
    prob = _circle_problem(30, 1)
    ce = T.ce_minimizer(prob)
    # Gradient by autodiff of the W-space loss: independent of the span coordinates.
    g = jax.grad(particles.weight_loss)(ce.W, prob)
    assert float(jnp.linalg.norm(g)) <= 1e-10, float(jnp.linalg.norm(g))
    assert float(ce.grad_norm) <= 1e-10
    assert float(jnp.max(jnp.abs(particles.weight_scores(prob, ce.W) - ce.scores))) <= 1e-12
    # GD from W_CE stays there.
    start = particles.Problem.from_embeddings(prob.E, prob.U, prob.p, prob.targets, W0=ce.W)
    assert float(jnp.max(jnp.abs(particles.gd(start, 1.0, 10).final_scores - ce.scores))) <= 1e-9
    grams = particles.Problem.from_grams(prob.G_E, prob.G_U, prob.p, prob.targets)
    assert abs(float(T.ce_minimizer(grams).loss - ce.loss)) <= 1e-12


def test_ce_minimizer_reports_separable():
    with pytest.raises(ValueError, match="no finite minimizer: separable"):
        T.ce_minimizer(particles.two_particles(0.5, 0.75))


def _soft_problem(angles):
    # 5 unit inputs in d = 2 at the given angles, M = 3 with u_2 = -u_0, and soft targets on
    # classes 0 and 1 only (class 2 is never a target).
    E = np.stack([np.cos(angles), np.sin(angles)], 1)
    U = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    q = np.array([[0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.4, 0.6, 0.0]])
    return particles.Problem.from_embeddings(E, U, particles.zipf(5, 1.0), q)


def test_ce_minimizer_soft_targets_without_a_finite_minimizer():
    # Inputs in the half-plane cos(angle) > 0: W = (u_0 + u_1) e_1^T keeps S[x, 0] = S[x, 1]
    # (the support) and lowers S[x, 2] = -S[x, 0] = -cos(angle_x) < 0 for every x, so the
    # loss decreases forever along it (the old check, one-hot only, returned exact=True).
    prob = _soft_problem(np.linspace(-1.0, 1.0, 5))
    with pytest.raises(ValueError, match="no finite minimizer"):
        T.ce_minimizer(prob)
    # Independent evidence: GD's loss keeps falling and class 2's probability goes to 0.
    traj = particles.gd(prob, 1.0, 20_000, save_steps=np.array([0, 1000, 20_000]))
    L = np.asarray(traj.loss)
    P2 = np.asarray(jax.nn.softmax(traj.final_scores, axis=-1))[:, 2]
    assert L[2] < L[1] - 1e-4 and P2.max() < 1e-3, (L, P2)


def test_ce_minimizer_soft_targets_with_a_finite_minimizer():
    # Same outputs, inputs around the whole circle: no w has w . e_x >= 0 for every x, so
    # class 2 cannot be pushed below the support everywhere and W_CE is finite.
    prob = _soft_problem(np.linspace(0.3, 5.9, 5))
    ce = T.ce_minimizer(prob)
    assert ce.exact and ce.status == "converged"
    # Gradient by autodiff of the W-space loss (independent of the span coordinates).
    g = jax.grad(particles.weight_loss)(ce.W, prob)
    assert float(jnp.linalg.norm(g)) <= 1e-10
    assert float(jnp.max(jnp.abs(ce.scores))) < 50
