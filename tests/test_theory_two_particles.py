"""particles.theory: the two-particle formulas (paper-notes §3.3), each checked against
`particles.gd` / `particles.two_particles` or autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import particles
from particles import theory as T

CASES = [(0.5, 0.75), (0.95, 0.75), (-0.5, 0.75), (0.3, 0.5)]


def test_gd_map_matches_particles_gd():
    for corr, p1 in CASES:
        for lr in (0.7, 10.0):
            traj = particles.gd(particles.two_particles(corr, p1), lr, 60)
            err = float(np.max(np.abs(traj.margins - T.two_particles_gd_margins(60, lr, corr, p1))))
            assert err <= 1e-12, f"corr={corr}, p1={p1}, lr={lr}: {err:.3g}"


def test_first_step_and_forgetting():
    corrs = np.linspace(-0.9, 0.99, 12)
    p1s = np.linspace(0.55, 0.95, 9)
    for corr in corrs:
        for p1 in p1s:
            m = np.asarray(particles.gd(particles.two_particles(corr, p1), 1.3, 1).margins[1])
            assert np.max(np.abs(m - T.two_particles_first_step(1.3, corr, p1))) <= 1e-14
            if abs(corr - (1 - p1) / p1) > 1e-9:
                assert bool(T.two_particles_forgets(corr, p1)) == bool(m.min() < 0), (corr, p1, m)


def test_balanced_margins_equal_and_monotone():
    m = np.asarray(particles.gd(particles.two_particles(0.9, 0.5), 50.0, 200).margins)
    assert np.max(np.abs(m[:, 0] - m[:, 1])) <= 1e-12
    assert np.all(np.diff(m[:, 0]) >= 0)


@pytest.mark.parametrize("corr", [0.5, -0.5])
def test_asymptotes_at_long_horizon(corr):
    p1, lr = 0.75, 1.0
    traj = particles.gd(particles.two_particles(corr, p1), lr, 10**6, save_steps=np.array([0, 10**5, 10**6]))
    err = [np.max(np.abs(np.asarray(traj.margins[k]) - T.two_particles_margin_asymptote(t, lr, corr, p1)))
           for k, t in ((1, 10**5), (2, 10**6))]
    if corr > 0:
        assert err[1] <= 1e-4, f"margins vs log(2(1-corr) lr p t) at t=1e6: error {err[1]:.3g}"
    else:
        # Slow mode: error ~ t^{-(1+corr)/(1-corr)} = t^{-1/3} (see the docstring).
        ratio = err[1] / err[0]
        assert err[1] <= 5e-3 and abs(ratio - 10 ** (-1 / 3)) <= 0.02, f"errors {err}, ratio {ratio:.4f}"
    m = np.asarray(traj.margins[-1])
    assert abs((m[0] - m[1]) - np.log(p1 / (1 - p1))) <= 2 * err[1] + 1e-12
    rel = abs(float(traj.loss[-1] / T.two_particles_loss_asymptote(10**6, lr, corr)) - 1)
    assert rel <= 1e-4, f"L t (1 - corr) lr -> 1: relative error {rel:.3g}"


def test_sharpness_at_zero_vs_autodiff_hessian():
    for corr, p1 in CASES:
        prob = particles.two_particles(corr, p1)
        H = jax.hessian(particles.weight_loss)(jnp.zeros((2, 2)), prob).reshape(4, 4)
        ref = np.linalg.eigvalsh(np.asarray(H))[-1]
        assert abs(T.two_particles_sharpness0(corr, p1) - ref) <= 1e-14


def test_spike_lr_is_the_loss_increase_threshold():
    for corr, p1 in [(0.5, 0.75), (0.95, 0.75), (0.8, 0.6)]:
        prob = particles.two_particles(corr, p1)
        lr_star = float(T.two_particles_spike_lr(corr, p1))
        one_step = lambda lr: float(particles.gd(prob, lr, 1).loss[-1]) - np.log(2)
        # Independent root of the simulated one-step loss (scipy brentq on particles.gd).
        ref = scipy.optimize.brentq(one_step, 1e-3, 1e4, xtol=1e-14, rtol=1e-14)
        assert abs(lr_star / ref - 1) <= 1e-9, (corr, p1, lr_star, ref)
        assert one_step(lr_star * (1 - 1e-6)) < 0 < one_step(lr_star * (1 + 1e-6))
    # No margin ever turns negative: no threshold, any step lowers the loss.
    assert np.isinf(T.two_particles_spike_lr(0.2, 0.75))
    assert float(particles.gd(particles.two_particles(0.2, 0.75), 1e6, 1).loss[-1]) < np.log(2)


def test_wedge_angle_by_sweeping_directions():
    n = 200_000
    th = (np.arange(n) + 0.5) * 2 * np.pi / n
    gam = np.stack([np.cos(th), np.sin(th)], 1)
    for corr in (-0.5, 0.5, 0.95):
        prob = particles.two_particles(corr, 0.75)
        # W = (u_1 - u_2) gamma^T / 2 has W^T (u_1 - u_2) = gamma; S = E W^T U^T.
        W = 0.5 * np.array([1.0, -1.0])[None, :, None] * gam[:, None, :]
        S = np.einsum("xi,kai,ya->kxy", np.asarray(prob.E), W, np.asarray(prob.U))
        acc = np.asarray(particles.accuracy(jnp.asarray(S), prob.p, prob.Y))
        angle = np.mean(acc == 1.0) * 2 * np.pi
        assert abs(angle - T.two_particles_wedge_angle(corr)) <= 2 * 2 * np.pi / n
        m = T.two_particles_margins_from_gamma(jnp.asarray(gam[:5]), corr)
        assert np.max(np.abs(m - particles.margins(jnp.asarray(S[:5]), prob.Y))) <= 1e-14
