"""The flow's own explicit solver (`particles._rk`, Dormand–Prince 5(4)) on equations with
known solutions: its order, its saved rows, its controller, and how it stops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import particles as pt
from particles import _rk


def _decay(s, y):
    return -y


def _lotka(s, y):
    return jnp.stack([y[0] - y[0] * y[1], y[0] * y[1] - y[1]])


def test_one_step_has_order_five_and_its_error_estimate_order_four():
    """On y' = y·cos(s) (y = exp(sin s)), halving h divides a step's error by 2⁶ (local error
    of a 5th-order method) and the embedded estimate by 2⁵ (it is the 4th-order solution's
    error): any wrong tableau entry breaks one of the two."""
    field = lambda s, y: y * jnp.cos(s)  # noqa: E731
    s0, y0 = 0.3, jnp.array([np.exp(np.sin(0.3))])
    errs, ests = [], []
    for h in (0.2, 0.1, 0.05):
        y, f, est = _rk._step(field, s0, y0, field(s0, y0), h)
        errs.append(abs(float(y[0]) - np.exp(np.sin(s0 + h))))
        ests.append(abs(float(est[0])))
        np.testing.assert_allclose(f, field(s0 + h, y), rtol=1e-15)  # FSAL: the end's field
    for k in range(2):
        assert 2 ** 5.6 < errs[k] / errs[k + 1] < 2 ** 6.4
        assert 2 ** 4.6 < ests[k] / ests[k + 1] < 2 ** 5.4


@jax.jit
def _solve(y0, s_ts, rtol, atol):
    return _rk.solve(_lotka, lambda y: dict(y=y), y0, 0.0, s_ts[-1], s_ts, rtol, atol, 10_000)


def test_saved_rows_are_the_solution_against_scipy_dop853():
    """Lotka–Volterra over three periods (no closed form): every saved row agrees with scipy's
    DOP853 at rtol 1e-13 within 1e-7 (rtol = atol = 1e-9 here; the error accumulates over
    ~100 steps), and tightening the tolerance 100× shrinks the error."""
    s_ts = jnp.linspace(0.0, 20.0, 41)
    y0 = jnp.array([2.0, 0.5])
    ref = solve_ivp(lambda s, y: np.asarray(_lotka(s, jnp.asarray(y))), (0, 20), np.asarray(y0), method="DOP853",
                    rtol=1e-13, atol=1e-13, t_eval=np.asarray(s_ts)).y.T
    errors = []
    for tol in (1e-7, 1e-9):
        rows, final, status, (steps, accepted, rejected), rest = _solve(y0, s_ts, tol, tol)
        assert int(status) == pt.Status.OK and np.isinf(rest) and int(steps) == int(accepted) + int(rejected)
        np.testing.assert_array_equal(final, rows["y"][-1])
        errors.append(np.abs(np.asarray(rows["y"]) - ref).max())
    assert errors[1] < 1e-7 and errors[1] < errors[0] / 10


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_the_same_steps_as_scipy_rk45(tol):
    """Saving only the end, the solver takes scipy RK45's steps (same tableau, first step and
    controller): the same number of field evaluations (2 for the first step, then 6 per
    attempted step) and the same end to round-off. Lotka–Volterra over three periods makes
    the controller reject steps and grow them again."""
    y0 = np.array([2.0, 0.5])
    ref = solve_ivp(lambda s, y: np.asarray(_lotka(s, jnp.asarray(y))), (0, 20), y0, method="RK45",
                    rtol=tol, atol=tol)
    rows, final, status, (steps, accepted, rejected), _ = _rk.solve(
        _lotka, lambda y: y, jnp.asarray(y0), 0.0, 20.0, jnp.array([20.0]), tol, tol, 10_000)
    assert int(status) == pt.Status.OK and int(rejected) > 0
    assert 2 + 6 * int(steps) == ref.nfev and int(accepted) == len(ref.t) - 1
    np.testing.assert_allclose(final, ref.y[:, -1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("y0, length", [((2.0, 0.5), 20.0), ((2.0, 0.5), 1e-3), ((0.0, 0.0), 20.0), ((1e3, 1e-3), 5.0)])
def test_the_first_step_is_scipys(y0, length):
    """Hairer's first step against scipy's own (`select_initial_step`, order 4 error estimate),
    including y0 = 0 (the 1e-6 guess, capped at 100× it) and an interval shorter than the guess."""
    from scipy.integrate._ivp.common import select_initial_step

    field = lambda s, y: jnp.stack([1.0 + y[0] - y[0] * y[1], y[0] * y[1] - y[1]])  # noqa: E731
    y = np.array(y0)
    f0 = np.asarray(field(0.0, jnp.asarray(y)))
    want = select_initial_step(lambda s, y: np.asarray(field(s, jnp.asarray(y))), 0.0, y, length, np.inf, f0, 1, 4,
                               1e-8, 1e-8)
    got = _rk._first_step(field, 0.0, jnp.asarray(y), jnp.asarray(f0), 1e-8, 1e-8, length)
    np.testing.assert_allclose(float(got), want, rtol=1e-12)


def test_saved_times_repeated_and_at_the_start_cost_no_step():
    s_ts = jnp.array([0.0, 0.0, 1.0, 1.0, 2.0])
    rows, final, status, (steps, _, _), _ = _rk.solve(_decay, lambda y: y, jnp.ones(3), 0.0, 2.0, s_ts,
                                                     1e-10, 1e-10, 1000)
    np.testing.assert_allclose(rows[:, 0], np.exp(-np.asarray(s_ts)), rtol=1e-9)
    alone = _rk.solve(_decay, lambda y: y, jnp.ones(3), 0.0, 2.0, jnp.array([1.0, 2.0]), 1e-10, 1e-10, 1000)
    assert int(steps) == int(alone[3][0])  # the repeated and initial times added no step


def test_the_solve_goes_on_past_the_last_saved_time_to_the_end():
    rows, final, status, _, _ = _rk.solve(_decay, lambda y: y, jnp.ones(1), 0.0, 3.0, jnp.array([0.0, 1.0]),
                                          1e-10, 1e-10, 1000)
    np.testing.assert_allclose(rows[:, 0], [1.0, np.exp(-1.0)], rtol=1e-9)
    np.testing.assert_allclose(final, [np.exp(-3.0)], rtol=1e-9)


def test_the_controller_lengthens_steps_on_a_smooth_solution():
    """y' = −y from 1 to s = 40 at 1e-8: the steps grow as the solution flattens (measured 65
    steps, one rejected; the first step is about 0.01), and a step shortened to land on a saved
    time does not shrink the next (eight saved times cost at most eight more steps)."""
    one = _rk.solve(_decay, lambda y: y, jnp.ones(1), 0.0, 40.0, jnp.array([40.0]), 1e-8, 1e-8, 1000)
    assert int(one[3][0]) < 80 and int(one[3][2]) <= 2
    many = _rk.solve(_decay, lambda y: y, jnp.ones(1), 0.0, 40.0, jnp.linspace(0.0, 40.0, 9), 1e-8, 1e-8, 1000)
    assert int(many[3][0]) <= int(one[3][0]) + 8


def test_a_step_shortened_onto_a_saved_time_does_not_shrink_the_next():
    """A saved time 1e-6 after another forces a tiny step; the next one starts again from the
    length proposed before it, so the whole solve costs one or two steps more, not the
    five or more that growing back from 1e-6 (at most 10× a step) would."""
    args = (_decay, lambda y: y, jnp.ones(1), 0.0, 30.0)
    far = _rk.solve(*args, jnp.array([10.0, 30.0]), 1e-8, 1e-8, 1000)
    near = _rk.solve(*args, jnp.array([10.0, 10.0 + 1e-6, 30.0]), 1e-8, 1e-8, 1000)
    assert int(far[3][0]) < int(near[3][0]) <= int(far[3][0]) + 2


def test_steady_state_stops_and_fills_the_later_rows():
    """y' = −y stops once rms(y') ≤ atol + rtol·rms(y), i.e. |y| ≤ atol / (1 − rtol): at
    s ≈ log(1e8) = 18.4, within a step; the rows after it hold the final state."""
    s_ts = jnp.linspace(0.0, 40.0, 41)
    rows, final, status, _, rest = _rk.solve(_decay, lambda y: y, jnp.ones(2), 0.0, 40.0, s_ts, 1e-8, 1e-8, 1000,
                                             steady_stop=True)
    assert int(status) == pt.Status.OK and 18.4 <= float(rest) < 21.0
    assert float(jnp.abs(final).max()) <= 1e-8 * (1 + 1e-6)
    later = np.asarray(s_ts) > float(rest)
    np.testing.assert_array_equal(np.asarray(rows)[later], np.broadcast_to(final, (later.sum(), 2)))
    np.testing.assert_allclose(np.asarray(rows)[~later][:, 0], np.exp(-np.asarray(s_ts)[~later]), rtol=0, atol=1e-8)


@pytest.mark.parametrize("max_steps, status", [(5, pt.Status.MAX_STEPS), (10_000, pt.Status.SOLVER_FAILURE)])
def test_a_solve_that_cannot_finish_says_why_and_leaves_inf(max_steps, status):
    """y' = y² from 1 blows up at s = 1: the steps collapse before it (solver failure), or the
    budget runs out first; the rows not reached hold inf."""
    s_ts = jnp.array([0.0, 0.5, 2.0])
    rows, final, st, (steps, _, _), _ = _rk.solve(lambda s, y: y * y, lambda y: y, jnp.ones(1), 0.0, 2.0, s_ts,
                                                  1e-8, 1e-8, max_steps)
    assert int(st) == status
    assert np.isinf(rows[-1, 0]) and (max_steps == 5 or abs(float(rows[1, 0]) - 2.0) < 1e-7)
    assert int(steps) <= max_steps


def test_flow_progress_bar_counts_saved_rows(capsys, monkeypatch):
    monkeypatch.delenv("PARTICLES_QUIET", raising=False)
    pt.flow(pt.two_particles(0.5, 0.75), 1e3, ts=pt.default_times(1e3, 11), progress=True)
    err = capsys.readouterr().err
    assert "flow:" in err and "/11 [" in err
