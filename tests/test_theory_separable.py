"""particles.theory.separable_loss_asymptote: the rate at which L t -> ||W_mm||^2 (paper-notes §3.2),
measured on an independent integration of the flow (scipy Radau in log-time) and an
independent max-margin solve (scipy SLSQP)."""

import numpy as np
import scipy.integrate
import scipy.optimize

import particles
from particles import theory as T


def _problem(seed=18):
    # N = 10 unit inputs in d = 3 labelled by a random hyperplane (so separable), M = 2,
    # U = first two rows of I_3, Zipf(1) frequencies. Seed 18: kappa - 1 = 0.1348.
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((10, 3))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    targets = (E @ rng.standard_normal(3) < 0).astype(int)
    return particles.Problem.from_embeddings(E, np.eye(3)[:2], particles.zipf(10, 1.0), targets), E, targets


def _flow_loss(E, targets, p, ts):
    """Loss of the gradient flow from W = 0 at times ts, through gamma = W^T (u_0 - u_1).

    With U = (e_1, e_2) only gamma matters: m_x = s_x gamma . e_x (s_x = +1 for target 0,
    -1 for target 1) and dgamma/dt = |u_0 - u_1|^2 sum_x p_x s_x e_x / (1 + e^{m_x}); in
    log-time s = log t the right-hand side is t times that (Radau with the exact Jacobian).
    """
    A = np.where(targets == 0, 1.0, -1.0)[:, None] * E

    def rhs(g):
        return 2.0 * A.T @ (p * np.exp(-np.logaddexp(0.0, A @ g)))

    def jac(g):
        m = A @ g
        w = p * np.exp(-np.logaddexp(0.0, m) - np.logaddexp(0.0, -m))
        return -2.0 * A.T @ (w[:, None] * A)

    tol = {"rtol": 1e-12, "atol": 1e-12}
    g1 = scipy.integrate.solve_ivp(lambda t, g: rhs(g), (0.0, 1.0), np.zeros(3), method="Radau",
                                   jac=lambda t, g: jac(g), **tol).y[:, -1]
    sol = scipy.integrate.solve_ivp(lambda s, g: np.exp(s) * rhs(g), (0.0, np.log(ts[-1])), g1, t_eval=np.log(ts),
                                    method="Radau", jac=lambda s, g: np.exp(s) * jac(g), **tol)
    assert sol.success
    return np.array([p @ np.logaddexp(0.0, -(A @ g)) for g in sol.y.T])


def test_kappa_matches_an_independent_max_margin():
    prob, E, targets = _problem()
    mm = T.max_margin(prob)
    A = np.where(targets == 0, 1.0, -1.0)[:, None] * E
    # min |gamma|^2 / 2 s.t. A gamma >= 1; W_mm = (u_0 - u_1) gamma^T / 2, ||W_mm||^2 = |gamma|^2 / 2.
    res = scipy.optimize.minimize(lambda g: g @ g / 2, np.ones(3), jac=lambda g: g, method="SLSQP",
                                  constraints=[{"type": "ineq", "fun": lambda g: A @ g - 1, "jac": lambda g: A}],
                                  options={"ftol": 1e-15, "maxiter": 500})
    assert res.success
    margins = A @ res.x
    kappa = margins[margins > 1 + 1e-6].min()
    # SLSQP meets its constraints to ~1e-10: 1e-8 on the norm and on kappa.
    assert abs(float(mm.norm2) - res.x @ res.x / 2) <= 1e-8
    assert abs(float(mm.kappa) - kappa) <= 1e-8
    assert abs(float(mm.kappa) - 1.1348) <= 1e-4  # the value quoted in the docstring
    assert float(mm.rate) == float(mm.kappa) - 1  # kappa - 1 < 2 mu and < 1 here


def test_loss_rate_is_t_to_the_minus_kappa_minus_one():
    prob, E, targets = _problem()
    mm = T.max_margin(prob)
    ts = 10.0 ** np.arange(4, 41, 4)
    rel = _flow_loss(E, targets, np.asarray(prob.p), ts) * ts / float(mm.norm2) - 1
    # Slow, not log(t)/t: still -2.7e-3 at t = 1e8 (log(t)/t would be 2e-7).
    assert 2.5e-3 < abs(rel[1]) < 2.8e-3, rel
    slopes = -np.diff(np.log(np.abs(rel))) / np.diff(np.log(ts))
    # Local exponents over 4 decades: 0.301, 0.161, 0.141, 0.136, 0.1353, 0.1349, 0.1348, ...:
    # from t = 1e20 on within 1e-3 of kappa - 1 (the next correction, relatively
    # t^{-(kappa-1)}, is ~1e-3 there).
    assert np.all(np.abs(slopes[4:] - float(mm.rate)) <= 1e-3), slopes
    # The asymptote itself, evaluated by the function under test.
    L = _flow_loss(E, targets, np.asarray(prob.p), np.array([1e8]))[0]
    pred = float(T.separable_loss_asymptote(mm.norm2, 1e8))
    assert abs(L / pred - 1 - rel[1]) <= 1e-12


def test_two_particle_rate_is_two_mu():
    # All constraints active (kappa = inf); mu = (1 + corr)/(1 - corr) for corr < 0, 1 else.
    for corr, rate in ((-0.5, 2 * 0.5 / 1.5), (-0.9, 2 * 0.1 / 1.9), (0.5, 1.0)):
        mm = T.max_margin(particles.two_particles(corr, 0.75))
        assert np.isinf(float(mm.kappa))
        assert abs(float(mm.rate) - rate) <= 1e-12
