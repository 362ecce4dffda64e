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
