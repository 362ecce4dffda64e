"""particles.theory: log-space Lambert W and the orthogonal closed forms (paper-notes §3.1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import particles
from particles import theory as T


# ------------------------------------------------------------------ Lambert W
def test_lambertw_matches_scipy_where_finite():
    logz = np.linspace(-700.0, 700.0, 4001)
    ref = scipy.special.lambertw(np.exp(logz)).real
    got = np.asarray(T.lambertw_exp(logz))
    rel = np.max(np.abs(got - ref) / ref)
    assert rel <= 1e-13, f"max relative error vs scipy {rel:.3g}"
    z = np.array([0.0, 1e-300, 0.5, 1.0, np.e, 1e5])
    assert np.allclose(T.lambertw(z), scipy.special.lambertw(z).real, rtol=1e-13, atol=0)


def test_lambertw_huge_arguments_solve_defining_equation():
    # e^logz overflows: check w + log w = logz directly (relative to logz, i.e. at its ulp).
    logz = np.geomspace(710.0, 1e300, 500)
    w = np.asarray(T.lambertw_exp(logz))
    assert np.all(np.isfinite(w))
    rel = np.max(np.abs(w + np.log(w) - logz) / logz)
    assert rel <= 1e-14, f"defining-equation residual {rel:.3g}"
    assert np.isinf(T.lambertw_exp(np.inf)) and T.lambertw_exp(-np.inf) == 0.0


def test_log_lambertw_for_tiny_and_underflowing_arguments():
    # Normal range: against scipy, log W0(e^L) with e^L in float64's normal range.
    L = np.linspace(-708.0, -1.0, 2001)
    ref = np.log(scipy.special.lambertw(np.exp(L)).real)
    got = np.asarray(T.log_lambertw_exp(L))
    # 4 ulps of |L| (ref itself carries the rounding of exp and log).
    assert np.max(np.abs(got - ref) / np.abs(ref)) <= 4 * np.finfo(float).eps
    # Subnormal and underflowing z = e^L (L < -708, down to -1e300): W0(z) = z - z^2 + ...,
    # so log W0(e^L) = L - W0(e^L) and W0(e^L) < 1e-307 is far below the ulp of L
    # (>= 1e-13): the float64 answer is L exactly. (It was NaN for L <= -708.5.)
    L = -np.concatenate([np.linspace(708.5, 800.0, 200), np.geomspace(800.0, 1e300, 200)])
    got = np.asarray(T.log_lambertw_exp(L))
    assert np.all(got == L)
    assert np.all(np.asarray(T.lambertw_exp(L)) >= 0) and np.all(np.isfinite(np.asarray(T.lambertw_exp(L))))
    assert T.log_lambertw_exp(-np.inf) == -np.inf
    # dv/dL = 1 / (1 + W) -> 1.
    assert jax.grad(T.log_lambertw_exp)(-900.0) == 1.0
    # The flow margin from a very negative start: m(0) = m0, and dm/dt = M p / (e^m + M - 1)
    # = M p / (M - 1) while e^m is negligible, so m(t) = m0 + t M p / (M - 1) for small t.
    assert float(T.orthogonal_flow_margin(0.0, 0.5, 2, m0=-720.0)) == -720.0
    m = float(T.orthogonal_flow_margin(1e-3, 0.5, 2, m0=-720.0))
    assert abs(m - (-720.0 + 1e-3)) <= 1e-12  # e^-720 and rounding of 720 (1e-13)


def test_lambertw_gradient_jit_vmap():
    z = 3.0
    w = scipy.special.lambertw(z).real
    # dW/dz = W / (z (1 + W)), independent of the implicit rule d log W / d log z = 1/(1 + W).
    assert abs(jax.grad(T.lambertw)(z) - w / (z * (1 + w))) <= 1e-14
    logz = jnp.linspace(-5.0, 50.0, 7)
    assert np.allclose(jax.jit(jax.vmap(T.lambertw_exp))(logz), T.lambertw_exp(logz), rtol=1e-15, atol=0)


# ----------------------------------------------------------------- flow margin
@pytest.mark.parametrize("M", [2, 10])
def test_flow_margin_matches_particles_flow(M):
    p = np.array([0.5, 0.3, 0.2])
    ts = np.array([0.0, 0.3, 1.0, 10.0, 1e2, 1e3, 1e4, 1e5, 1e6])
    traj = particles.flow(particles.orthogonal(p, M=M), 1e6, ts=ts, rtol=1e-10, atol=1e-10)
    assert traj.ok, traj.message
    theory = T.orthogonal_flow_margin(ts[:, None], p[None, :], M)
    err = float(np.max(np.abs(traj.margins - theory)))
    assert err <= 1e-6, f"flow vs closed form: max error {err:.3g}"
    # The loss of the simulated scores equals the margin formula for the loss.
    lerr = float(np.max(np.abs(traj.loss - T.orthogonal_loss(theory, p, M))))
    assert lerr <= 1e-6, f"loss formula error {lerr:.3g}"


def test_flow_margin_defining_equation_and_m0():
    t = np.geomspace(1e-3, 1e300, 300)
    m = np.asarray(T.orthogonal_flow_margin(t, 0.2, 5))
    assert np.all(np.isfinite(m))
    # e^m + 4 m = 5 * 0.2 * t + 1, compared relative to the right-hand side.
    rel = np.max(np.abs((np.exp(np.minimum(m, 700)) + 4 * m) - (t + 1)) / (t + 1) * (m < 700))
    assert rel <= 1e-13, f"residual {rel:.3g}"
    # Restarting from m(t1) at t1 reproduces m(t1 + t2) (the flow is autonomous).
    m1 = T.orthogonal_flow_margin(7.0, 0.3, 4)
    assert abs(T.orthogonal_flow_margin(5.0, 0.3, 4, m0=m1) - T.orthogonal_flow_margin(12.0, 0.3, 4)) <= 1e-13
    # dm/dt = M p / (e^m + M - 1) through autodiff of the Lambert-W form.
    mt = T.orthogonal_flow_margin(3.0, 0.3, 4)
    dm = jax.grad(T.orthogonal_flow_margin)(3.0, 0.3, 4.0)
    assert abs(dm - 4 * 0.3 / (np.exp(mt) + 3)) <= 1e-13


def test_single_class_margin_is_infinite():
    assert np.isinf(T.orthogonal_flow_margin(1.0, 0.5, 1))
    assert np.all(np.isinf(T.orthogonal_gd_margin(3, 1.0, 0.5, 1)))
    assert T.orthogonal_loss(jnp.array([1.0]), jnp.array([1.0]), 1) == 0.0
    with pytest.raises(ValueError, match="M=0"):
        T.orthogonal_flow_margin(1.0, 0.5, 0)


# ------------------------------------------------------------------------- GD
@pytest.mark.parametrize("lr", [0.5, 10.0])
def test_gd_recursion_matches_particles_gd(lr):
    p = np.asarray(particles.zipf(6, 1.0))
    M = 4
    traj = particles.gd(particles.orthogonal(p, M=M), lr, 500)
    theory = T.orthogonal_gd_margin(500, lr, p, M)
    assert theory.shape == (501, 6)
    err = float(np.max(np.abs(traj.margins - theory)))
    assert err <= 1e-12, f"gd vs recursion: {err:.3g}"
    assert abs(theory[1] - lr * p).max() <= 1e-15  # m_1 = lr p


def test_gd_dominates_flow_for_every_step_size():
    lrs = jnp.array([0.01, 0.3, 1.0, 10.0, 1e3])[:, None]
    p = jnp.array([0.6, 0.1])[None, :]
    m = T.orthogonal_gd_margin(2000, lrs, p, 7)
    steps = jnp.arange(2001.0)[:, None, None]
    bound = T.orthogonal_gd_margin_bound(steps, lrs[None], p[None], 7)
    gap = float(jnp.min(m - bound))
    assert gap >= -1e-12, f"GD margin below the flow bound by {-gap:.3g}"
    # Monotone for every lr (increments below the ulp of a huge margin round to 0).
    assert bool(jnp.all(jnp.diff(m, axis=0) >= 0))


def test_asymptotes_at_long_horizon():
    # Flow: m(t) - log(M p t) = O(log t / t); at t = 1e12 below 1e-9.
    for M in (2, 10):
        t, p = 1e12, 0.3
        err = abs(float(T.orthogonal_flow_margin(t, p, M) - T.orthogonal_margin_asymptote(t, p, M)))
        assert err <= 1e-9, f"M={M}: flow margin - log(M p t) = {err:.3g}"
    # GD after 1e6 steps: margins ~ log(lr M p t) and loss ~ N (M - 1) / (M lr t).
    p = jnp.array([0.5, 0.3, 0.2])
    lr, M, steps = 2.0, 5, 10**6
    m = T.orthogonal_gd_margin(steps, lr, p, M)[-1]
    merr = float(jnp.max(jnp.abs(m - T.orthogonal_margin_asymptote(lr * steps, p, M))))
    assert merr <= 1e-4, f"GD margin vs log(lr M p t): {merr:.3g}"
    L = T.orthogonal_loss(m, p, M)
    rel = float(abs(L / T.orthogonal_loss_asymptote(steps, 3, M, lr) - 1))
    assert rel <= 1e-4, f"loss vs N(M-1)/(M lr t): relative error {rel:.3g}"


def test_loss_formula_is_stable_and_matches_particles_loss():
    m = jnp.array([[-800.0, 0.0, 3.0, 900.0]])
    p = jnp.array([0.1, 0.2, 0.3, 0.4])
    L = T.orthogonal_loss(m, p, 3)
    assert bool(jnp.isfinite(L))
    # Scores with equal wrong classes: S[x, f*] = 2m/3, others -m/3 (finite m only).
    mm = m[0, 1:3]
    S = jnp.stack([2 * mm / 3, -mm / 3, -mm / 3], axis=1)
    ref = particles.loss(S, jnp.array([0.4, 0.6]), jnp.eye(3)[jnp.array([0, 0])])
    assert abs(T.orthogonal_loss(mm, jnp.array([0.4, 0.6]), 3) - ref) <= 1e-14


def _numpy_gd(lr, p, M, steps, save):
    """Orthogonal GD margins written out here: m <- m + lr M p / (e^m + M - 1)."""
    m, out = np.zeros_like(p), {}
    for k in range(1, steps + 1):
        q = np.exp(-m)
        m = m + lr * M * p * q / (1 + (M - 1) * q)
        if k in save:
            out[k] = m.copy()
    return out


def test_asymptote_fails_at_large_lr_and_validity_says_so():
    # The case: p = [.5, .3, .15, .05], M = 3, lr = 100, 20,000 steps.
    p, M, lr, t = np.array([0.5, 0.3, 0.15, 0.05]), 3, 100.0, 20_000
    m = _numpy_gd(lr, p, M, t, {t})[t]
    # The first step puts m = lr p; e^m >> lr M p t keeps the big ones there.
    assert np.allclose(m, [50.0, 30.0, 15.243, 12.612], atol=1e-3), m
    asym = np.asarray(T.orthogonal_margin_asymptote(lr * t, p, M))
    assert np.allclose(asym, [14.914, 14.403, 13.710, 12.612], atol=1e-3)
    # Predicted error vs the measured one: 35.086, 15.597, 1.533, 4e-4 against
    # 35.086, 15.597, 1.533, 6e-4 (a lower bound on GD, tight once e^{lr p} dominates).
    pred = np.asarray(T.orthogonal_asymptote_error(t, p, M, lr=lr))
    assert np.all(pred <= (m - asym) + 1e-9) and np.max(np.abs(pred - (m - asym))) <= 1e-3
    ok = np.asarray(T.orthogonal_asymptote_valid(t, p, M, lr=lr, rtol=0.01))
    assert ok.tolist() == [False, False, False, True]
    assert (np.abs(np.expm1(m - asym)) <= 0.01).tolist() == ok.tolist()


def test_asymptote_error_prediction_on_a_grid():
    # The prediction m^ (flow restarted after the exact first step) is a lower bound on the
    # GD margin, within 0.15 nats at t = 10 and 4e-3 at t = 1000 over lr in [0.1, 100],
    # M in {2, 3, 10}, p in [0.01, 0.5] (measured maxima 0.147, 0.025, 3.7e-3, 4.8e-4 at
    # t = 10, 1e2, 1e3, 1e4: the GD excess over the convexity bound, ~log(t)/(2t) relative).
    # One broadcast run over M (axis 0), lr (axis 1) and p (axis 2).
    M = np.array([2.0, 3.0, 10.0])[:, None, None]
    lr = np.array([0.1, 1.0, 10.0, 100.0])[None, :, None]
    p = np.array([0.5, 0.3, 0.15, 0.05, 0.01])[None, None, :]
    bounds = {10: 0.16, 100: 0.03, 1000: 4e-3, 10_000: 6e-4}
    out = _numpy_gd(lr, p * np.ones_like(M * lr), M, 10_000, set(bounds))
    for t, tol in bounds.items():
        actual = out[t] - np.log(lr * M * p * t)
        pred = np.asarray(T.orthogonal_asymptote_error(t, p, M, lr=lr))
        assert np.all(actual - pred >= -1e-9), t
        assert np.max(actual - pred) <= tol, (t, np.max(actual - pred))
    # Flow: the exact margin, so the "error" is the exact m(t) - log(M p t), O(log(t)/t).
    t = np.array([1e3, 1e6, 1e9])
    e = np.asarray(T.orthogonal_asymptote_error(t, 0.3, 4))
    mflow = np.asarray(T.orthogonal_flow_margin(t, 0.3, 4))
    assert np.allclose(e, mflow - np.log(4 * 0.3 * t), atol=1e-12)
    # e^m + 3 m = 1.2 t + 1 gives m - log(1.2 t) ~ (1 - 3 log(1.2 t)) / (1.2 t).
    assert np.allclose(e[1:], (1 - 3 * np.log(1.2 * t[1:])) / (1.2 * t[1:]), rtol=1e-3)


def test_asymptote_validity_arguments():
    assert not bool(T.orthogonal_asymptote_valid(0.0, 0.3, 3, lr=1.0))
    assert not bool(T.orthogonal_asymptote_valid(10.0, 0.0, 3, lr=1.0))
    with pytest.raises(ValueError, match="rtol"):
        T.orthogonal_asymptote_valid(10.0, 0.3, 3, rtol=-1.0)
    with pytest.raises(ValueError, match="lr"):
        T.orthogonal_asymptote_error(10.0, 0.3, 3, lr=0.0)
