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


# ---------------------------------------------------------------- best 0-1 loss
@pytest.mark.parametrize("N,seed", [(3, 0), (8, 2), (30, 1)])
def test_best_zero_one_vs_brute_force(N, seed):
    prob = _circle_problem(N, seed)
    best = T.best_zero_one(prob)
    assert best.exact
    # Brute force: 2e5 directions of gamma = W^T (u_0 - u_1), scores by particles.weight_scores.
    th = np.linspace(0, 2 * np.pi, 200_000, endpoint=False)
    Ws = 0.5 * np.array([1.0, -1.0])[None, :, None] * np.stack([np.cos(th), np.sin(th)], 1)[:, None, :]
    S = jax.vmap(lambda W: particles.weight_scores(prob, W))(jnp.asarray(Ws))
    brute = float(jnp.min(particles.zero_one(S, prob.p, prob.Y)))
    assert float(best.zero_one) <= brute + 1e-15
    if N <= 8:  # few, wide arcs: the grid hits each one
        assert abs(float(best.zero_one) - brute) <= 1e-15
    assert abs(float(particles.zero_one(particles.weight_scores(prob, best.W), prob.p, prob.Y)) - float(best.zero_one)) <= 1e-15


def test_gap_and_top_frequency_scheme():
    prob = _circle_problem(30, 1)
    gap = float(T.zero_one_gap(prob))
    # Cross-entropy misallocates capacity here (paper-notes §3.4): a strictly positive gap.
    assert gap > 0.05, gap  # 0.0626 for this draw
    # W* = sum_{x <= r} u_{f*(x)} e_x^T, built in W-space from the embeddings.
    E, U = np.asarray(prob.E), np.asarray(prob.U)
    order = np.argsort(-np.asarray(prob.p), kind="stable")
    for r in (0, 1, 4):
        Wstar = sum((np.outer(U[int(prob.targets[x])], E[x]) for x in order[:r]), np.zeros((2, 2)))
        ref = particles.weight_scores(prob, jnp.asarray(Wstar))
        assert float(jnp.max(jnp.abs(T.top_frequency_scores(prob, r) - ref))) <= 1e-14
    # Larger d / M: a search, no worse than any top-frequency scheme or W_CE.
    big = particles.random_sphere(jax.random.PRNGKey(0), 5, 5, 2)
    res = T.best_zero_one(big, samples=256)
    assert not res.exact
    tops = [float(particles.zero_one(T.top_frequency_scores(big, r), big.p, big.Y)) for r in range(6)]
    assert float(res.zero_one) <= min(tops + [float(T.ce_minimizer(big).zero_one)]) + 1e-15
