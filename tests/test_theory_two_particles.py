"""particles.theory: the two-particle formulas (paper-notes §3.3), each checked against
`particles.gd` / `particles.two_particles` or autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
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


def _mispredicted_after_one_step(corr, p1, lr):
    # argmax of particles.gd's scores, ties to the first index (numpy's argmax, as `accuracy`).
    S = np.asarray(particles.gd(particles.two_particles(corr, p1), lr, 1).final_scores)
    return bool(np.any(np.argmax(S, axis=1) != np.array([0, 1])))


def test_forgets_follows_the_tie_convention():
    # Exact ties in float64: both first-step margins are 0 at corr = 1, p1 = 1/2 (token 2,
    # target class 1, loses the tie); m2 = 0 at p1 = 1, corr = 0; m1 = 0 at p1 = 0, corr = 0
    # (token 1, target class 0, wins it).
    for corr, p1, expected in ((1.0, 0.5, True), (0.0, 1.0, True), (0.0, 0.0, False)):
        for lr in (0.3, 1.0, 7.0):
            assert _mispredicted_after_one_step(corr, p1, lr) is expected, (corr, p1, lr)
        assert bool(T.two_particles_forgets(corr, p1)) is expected, (corr, p1)
    # Away from ties the function and the simulation agree everywhere on a grid, both orders of p.
    for corr in np.linspace(-0.95, 1.0, 14):
        for p1 in np.linspace(0.05, 0.95, 13):
            tie = min(abs(corr * (1 - p1) - p1), abs(corr * p1 - (1 - p1))) <= 1e-9
            if not tie:
                sim = _mispredicted_after_one_step(corr, p1, 2.0)
                assert bool(T.two_particles_forgets(corr, p1)) == sim, (corr, p1)


def test_margin_map_is_the_one_implementation():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 3, (50, 2))
    lr, corr, p1 = rng.uniform(0.1, 10, 50), rng.uniform(-1, 1, 50), rng.uniform(0, 1, 50)
    a = T.two_particles_coefficients(lr, corr, p1)
    m1, m2 = T.two_particles_margin_map(m[:, 0], m[:, 1], *a)
    # two_particles_step calls the map (under jit, where XLA may fuse into FMAs: equal to
    # an ulp of the update, ~1e-15 here).
    assert np.max(np.abs(np.stack([m1, m2], -1) - np.asarray(T.two_particles_step(m, lr, corr, p1)))) <= 1e-13
    # The map written out here with numpy: equal to rounding (one ulp of the update).
    def phi(x):
        return 1 / (1 + np.exp(x))

    ref1 = m[:, 0] + 2 * lr * (p1 * phi(m[:, 0]) - corr * (1 - p1) * phi(m[:, 1]))
    ref2 = m[:, 1] + 2 * lr * ((1 - p1) * phi(m[:, 1]) - corr * p1 * phi(m[:, 0]))
    assert np.max(np.abs(np.asarray(m1) - ref1)) <= 1e-13 and np.max(np.abs(np.asarray(m2) - ref2)) <= 1e-13
    # Huge margins: e^m overflows to inf and phi to 0, no NaN.
    big = T.two_particles_margin_map(jnp.array(1e4), jnp.array(-1e4), *T.two_particles_coefficients(1.0, 0.5, 0.75))
    assert np.all(np.isfinite(np.asarray(big)))


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
        # Slow mode: error ~ t^{-(1+corr)/(1-corr)} = t^{-1/3} (see the docstring); GD at
        # lr = 1, p1 = 0.75: 4.1e-3 at t = 1e6.
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
    for corr, p1 in [(0.5, 0.75), (0.95, 0.75), (0.8, 0.6), (0.9, 0.2)]:  # last: token 1 is the rare one
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


def _flow(corr, p1, ts):
    """Margins of the two-particle gradient flow at times ts, integrated independently:
    dm1/dt = 2 (p1 phi(m1) - corr p2 phi(m2)), dm2/dt = 2 (p2 phi(m2) - corr p1 phi(m1)),
    from 0 to 1 in t, then in log-time s = log t (Radau, exact Jacobian, rtol 1e-13)."""
    p2 = 1 - p1

    def phi(m):
        return np.exp(-np.logaddexp(0, m))

    def dphi(m):
        return -np.exp(-np.logaddexp(0, m) - np.logaddexp(0, -m))

    def rhs(m):
        return 2 * np.array([p1 * phi(m[0]) - corr * p2 * phi(m[1]), p2 * phi(m[1]) - corr * p1 * phi(m[0])])

    def jac(m):
        return 2 * np.array([[p1 * dphi(m[0]), -corr * p2 * dphi(m[1])], [-corr * p1 * dphi(m[0]), p2 * dphi(m[1])]])

    tol = {"rtol": 1e-13, "atol": 1e-13}
    m1 = scipy.integrate.solve_ivp(lambda t, m: rhs(m), (0, 1), np.zeros(2), method="Radau",
                                   jac=lambda t, m: jac(m), **tol)
    sol = scipy.integrate.solve_ivp(lambda s, m: np.exp(s) * rhs(m), (0, np.log(ts[-1])), m1.y[:, -1],
                                    t_eval=np.log(ts), method="Radau", jac=lambda s, m: np.exp(s) * jac(m), **tol)
    assert sol.success
    return sol.y.T


def _slopes(err, ts):
    return -np.diff(np.log(np.abs(err))) / np.diff(np.log(ts))


@pytest.mark.parametrize("corr", [-0.9, -0.7, -0.5, -0.3, 0.0, 0.5])
def test_asymptote_rates_on_an_independent_flow(corr):
    p1 = 0.75
    ts = 10.0 ** np.arange(4, 17, 2)
    m = _flow(corr, p1, ts)
    p = np.array([p1, 1 - p1])
    pred_m = np.asarray(T.two_particles_margin_asymptote(ts, 1.0, corr, p1))
    merr = np.max(np.abs(m - pred_m), axis=1)
    L = np.logaddexp(0, -m) @ p  # the loss of the flow's margins
    lerr = L / np.asarray(T.two_particles_loss_asymptote(ts, 1.0, corr)) - 1
    r = (1 + corr) / (1 - corr)
    if corr < 0:
        # Margins: t^{-(1+corr)/(1-corr)}. Measured local exponents over the last two
        # decades: 0.054, 0.177, 0.333, 0.538 (predicted 0.053, 0.176, 0.333, 0.538); 0.003
        # covers the pre-asymptotic drift at corr = -0.9.
        assert abs(_slopes(merr, ts)[-1] - r) <= 0.003, (_slopes(merr, ts), r)
    else:
        # log(t)/t: err t / log t stays O(1) and steady (within 15% over t = 1e8..1e12,
        # against factors 10^4 if the error decayed like a power t^{-1/2}).
        q = (merr * ts / np.log(ts))[2:5]
        assert q.max() / q.min() <= 1.15, q
    if corr < -1 / 3:
        # Loss: t^{-2(1+corr)/(1-corr)}, second order in the slow mode. Measured 0.104,
        # 0.353, 0.665 (predicted 0.105, 0.353, 0.667) over a window where the error stays
        # >= 1e-10, above the integration error (~1e-12).
        k = {-0.9: -1, -0.7: 2, -0.5: 4}[corr]
        assert abs(_slopes(lerr, ts)[k] - 2 * r) <= 0.005, (_slopes(lerr, ts), 2 * r)
        # The same rate is max_margin's `rate` (kappa = inf, mu = (1 + corr)/(1 - corr)).
        assert abs(float(T.max_margin(particles.two_particles(corr, p1)).rate) - 2 * r) <= 1e-12
    else:
        # log(t)/t: measured (err t / log t) = 0.94, 1.22, 2.41 at t = 1e10 for corr = -0.3, 0, 0.5.
        q = (lerr * ts / np.log(ts))[2:5]
        assert q.min() > 0 and q.max() / q.min() <= 1.15, q


def test_balanced_p_has_no_slow_mode():
    # p1 = 1/2: m1 = m2 for all t, the antisymmetric mode is never excited, so even at
    # corr = -0.7 the margin error decays like log(t)/t.
    ts = 10.0 ** np.arange(4, 13, 2)
    m = _flow(-0.7, 0.5, ts)
    assert np.max(np.abs(m[:, 0] - m[:, 1])) <= 1e-9
    merr = np.max(np.abs(m - np.asarray(T.two_particles_margin_asymptote(ts, 1.0, -0.7, 0.5))), axis=1)
    q = merr * ts / np.log(ts)
    assert q.max() / q.min() <= 1.3, q


def test_margins_from_gamma_on_any_batch_shape():
    """(m1, m2) = (γ·e1, −γ·e2) with e1 = (1, 0), e2 = (α, √(1 − α²)), written in numpy, for a
    single γ, a batch of γ and a batch of α broadcast against it."""
    rng = np.random.default_rng(0)
    gam = rng.normal(size=(3, 4, 2))
    corr = np.array([-0.5, 0.2, 0.9])[:, None]

    def ref(g, a):
        return np.stack([g[..., 0], -(a * g[..., 0] + np.sqrt(1 - a**2) * g[..., 1])], -1)

    got = np.asarray(T.two_particles_margins_from_gamma(jnp.asarray(gam), jnp.asarray(corr)))
    assert got.shape == (3, 4, 2) and np.max(np.abs(got - ref(gam, corr))) <= 1e-15  # a 2-term dot product
    one = np.asarray(T.two_particles_margins_from_gamma(jnp.array([1.0, 2.0]), 0.6))
    assert one.shape == (2,) and np.max(np.abs(one - [1.0, -(0.6 + 2 * 0.8)])) <= 1e-15
    # corr = ±1: e2 = ±e1 (the square root clips at 0, never NaN)
    assert np.asarray(T.two_particles_margins_from_gamma(jnp.array([1.0, 2.0]), 1.0)).tolist() == [1.0, -1.0]


def test_first_step_forgetting_and_the_map_against_numpy_on_a_grid():
    """One step from W = 0 by the numpy map (paper-notes 3.3) against the formulas, on a grid
    of (lr, corr, p1) including p1 < 1/2, negative corr and p1 = 1/2."""
    lr, corr, p1 = np.meshgrid([0.3, 2.0], [-0.8, -0.2, 0.0, 0.4, 0.9], [0.2, 0.5, 0.75], indexing="ij")
    p2 = 1 - p1
    m1 = 2 * lr * (p1 * 0.5 - corr * p2 * 0.5)  # φ(0) = 1/2
    m2 = 2 * lr * (p2 * 0.5 - corr * p1 * 0.5)
    first = np.asarray(T.two_particles_first_step(lr, corr, p1))
    assert np.max(np.abs(first - np.stack([m1, m2], -1))) <= 1e-15
    step = np.asarray(T.two_particles_step(np.zeros(lr.shape + (2,)), lr, corr, p1))
    assert np.max(np.abs(step - first)) <= 1e-15
    forgets = np.asarray(T.two_particles_forgets(corr, p1))
    assert np.array_equal(forgets, (m1 < 0) | (m2 <= 0))  # the tie rule: token 2 loses a tie
    # two steps by the numpy map against two_particles_gd_margins (a 0-d lr, corr, p1)
    phi = lambda m: 1 / (1 + np.exp(m))  # noqa: E731
    a = [0.0, 0.0]
    for _ in range(2):
        a = [a[0] + 2 * 1.5 * (0.7 * phi(a[0]) - 0.3 * 0.3 * phi(a[1])),
             a[1] + 2 * 1.5 * (0.3 * phi(a[1]) - 0.3 * 0.7 * phi(a[0]))]
    got = np.asarray(T.two_particles_gd_margins(2, 1.5, 0.3, 0.7))
    assert got.shape == (3, 2) and np.max(np.abs(got[-1] - a)) <= 1e-15 and got[0].tolist() == [0.0, 0.0]


def test_the_loss_asymptote_scales_with_the_step_size():
    """GD at lr = 0.5 for 10^5 steps (flow time t = lr·k = 5e4): L (1 - corr) lr k → 1 with a
    correction of order log(t)/t (≈ 2.4 log t / t at corr = 0.5, the measured constant of the
    docstring: 5e-4 here); the tolerance 1e-2 keeps a factor 20 of margin and still fails any
    other power of lr."""
    corr, lr, k = 0.5, 0.5, 100_000
    loss = float(particles.gd(particles.two_particles(corr, 0.75), lr, k, save_every=k).loss[-1])
    assert abs(loss * (1 - corr) * lr * k - 1) <= 1e-2
    assert abs(float(T.two_particles_loss_asymptote(lr * k, 1.0, corr)) / loss - 1) <= 1e-2
    assert abs(float(T.two_particles_loss_asymptote(k, lr, corr)) / loss - 1) <= 1e-2


def test_margin_asymptote_at_a_step_size_other_than_one():
    """m_x ≈ log(2 (1 − α) η p_x t) written out in numpy, at η = 0.3 (η enters as a product)."""
    t, lr, corr, p1 = np.array([10.0, 1e4]), 0.3, 0.4, 0.7
    want = np.log(2 * (1 - corr) * lr * t[:, None] * np.array([p1, 1 - p1]))
    got = np.asarray(T.two_particles_margin_asymptote(t, lr, corr, p1))
    assert np.max(np.abs(got - want)) <= 1e-14
