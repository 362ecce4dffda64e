"""Events at their edges: flat losses, losses of exactly 0, ties at a threshold, zero tolerance,
huge step sizes, rows after a non-finite one, and the noisy-run detectors against their
definitions (particles.events, the reducer the sweeps and the detectors share).

Expected values come from the documented conventions (module docstring of particles.events:
"an increase is L_k − L_{k−1} > rtol·|L_{k−1}| + atol", strict; a sign needs |m| > atol;
first full accuracy counts from step 0) applied by hand to numbers chosen exactly
representable in binary (0.5, 0.0625, 2⁻⁴⁸), or from closed forms (one GD step from S = 0
moves an orthogonal margin by lr·p). Every comparison here is exact: the values are
constructed so that no rounding happens.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import particles as pt
import particles.analysis as pa
from particles import events as ev
from particles._cell import run_cell
from particles._trajectory import meta_json

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)


def rows(loss, margins=None, full=None, steps=None, tol=ev.Tolerances()):
    """events.of_rows on hand-made rows (margins 0 and never full by default)."""
    loss = np.asarray(loss, np.float64)
    T = len(loss)
    margins = np.zeros((T, 1)) if margins is None else np.asarray(margins, np.float64).reshape(T, -1)
    full = np.zeros(T, bool) if full is None else np.asarray(full, bool)
    steps = np.arange(T) if steps is None else np.asarray(steps)
    return ev.of_rows(steps, loss, margins, full, tol)


def traj(loss, margins, *, accuracy=None, integrator="gd", steps=None, t=None, **meta):
    loss = np.asarray(loss, np.float64)
    margins = np.asarray(margins, np.float64).reshape(len(loss), -1)
    acc = np.mean(margins > 0, axis=1) if accuracy is None else np.asarray(accuracy, np.float64)
    steps = np.arange(len(loss)) if steps is None and t is None else steps
    return pt.Trajectory(t=jnp.asarray(np.arange(len(loss)) if t is None else t, jnp.float64),
                         steps=None if steps is None else jnp.asarray(steps),
                         loss=jnp.asarray(loss), zero_one=jnp.asarray(1.0 - acc), accuracy=jnp.asarray(acc),
                         margins=jnp.asarray(margins), final_scores=jnp.zeros((margins.shape[1], 2)),
                         status=jnp.asarray(0), first_bad_step=jnp.asarray(-1),
                         info=meta_json(dict(integrator=integrator, **meta)))


# ------------------------------------------------------------ resolution
def test_tolerances_follow_the_documented_resolution():
    """GD: 64 ulps of the dtype, relative; flow: 1000 × (rtol, atol) plus 64 ulps (README)."""
    gd = ev.Tolerances.for_run("gd", "float64")
    assert gd == ev.Tolerances(64 * EPS64, 0.0, 64 * EPS64, 64 * EPS64)
    assert ev.Tolerances.for_run("sgd", "float32") == ev.Tolerances(64 * EPS32, 0.0, 64 * EPS32, 64 * EPS32)
    flow = ev.Tolerances.for_run("flow", "float64", rtol=1e-6, atol=1e-9)
    assert flow == ev.Tolerances(1000 * 1e-6 + 64 * EPS64, 1000 * 1e-9, 1000 * 1e-6 + 64 * EPS64, 1000 * 1e-9)
    # the flow's default tolerances are diffrax's 1e-8 of particles.flow
    assert ev.Tolerances.for_run("flow") == ev.Tolerances.for_run("flow", "float64", 1e-8, 1e-8)
    assert ev.Tolerances.for_run("flow").margin_atol == 1000 * 1e-8
    # read off a trajectory's metadata
    f = traj([1.0, 0.5], [0.0, 1.0], integrator="flow", t=[0.0, 1.0], rtol=1e-6, atol=1e-9)
    assert ev.tolerances_of(f) == flow
    assert ev.tolerances_of(traj([1.0, 0.5], [0.0, 1.0], dtype="float32")) == ev.Tolerances.for_run("gd", "float32")
    for bad in (-1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="margin_atol"):
            ev.Tolerances(margin_atol=bad)
    assert ev.Tolerances(loss_atol=0) == ev.Tolerances()  # 0 is allowed (">= 0")


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
def test_an_increase_is_strict_at_the_threshold(xp):
    """L − L_prev > rtol·|L_prev| + atol, strictly: a rise of exactly the threshold is not one."""
    tol = ev.Tolerances(loss_rtol=0.0625)  # 2⁻⁴: every number below is exact in binary
    prev = xp.asarray([1.0, 1.0, 1.0, -2.0, -2.0, 0.0, 0.0])
    loss = xp.asarray([1.0625, 1.0625 + 2.0**-48, 1.0, -1.875, -1.875 + 2.0**-48, 0.0, 1e-300])
    # |prev| for a negative loss: -2 -> -1.875 is a rise of 0.125 = 0.0625 * |-2|, not beyond it
    want = [False, True, False, False, True, False, True]
    assert np.asarray(ev.increase(prev, loss, tol, xp)).tolist() == want
    atol = ev.Tolerances(loss_atol=0.5)
    got = ev.increase(xp.asarray([1.0, 1.0, 0.0]), xp.asarray([1.5, 1.5 + 2.0**-40, 0.0]), atol, xp)
    assert np.asarray(got).tolist() == [False, True, False]


def test_flat_and_zero_losses_have_no_increase_spike_or_rise():
    for loss in ([0.5] * 6, [0.0] * 6, [np.log(2.0)] * 6):
        for tol in (ev.Tolerances(), ev.Tolerances.for_run("gd")):
            out = rows(loss, tol=tol)
            assert int(out["loss_increases"]) == 0 and int(out["loss_spikes"]) == 0
            assert float(out["max_spike"]) == 0.0
            assert ev.spikes(np.arange(6), np.asarray(loss), tol) == []
    assert ev.loss_rises([0.5] * 6, rel=0.0, abs_tol=0.0).tolist() == []
    assert ev.large_spikes([0.0] * 30, window=5).tolist() == []  # 0 > 3 · 0 is false


def test_spikes_max_spike_and_counts_by_their_definitions():
    loss = [3.0, 1.0, 2.0, 0.5, 2.5, 2.0, 2.25]  # rises at 2, 4, 6; runs: {2}, {4}, {6}
    out = rows(loss)
    assert int(out["loss_increases"]) == 3 and int(out["loss_spikes"]) == 3
    # max over k of L_k − min_{j≤k} L_j: 2.5 − 0.5 at k = 4
    assert float(out["max_spike"]) == 2.0
    spikes = ev.spikes(np.arange(7) * 10, np.asarray(loss), ev.Tolerances())
    assert [(s["step"], s["peak_step"], s["height"]) for s in spikes] == [(20, 20, 1.0), (40, 40, 2.0), (60, 60, 0.25)]
    (s,) = ev.spikes(np.arange(3), np.array([0.0, 1.0, 2.0]), ev.Tolerances())  # rising to the last row
    assert (s["step"], s["peak_step"], s["height"]) == (1, 2, 2.0)
    assert [s["relative"] for s in spikes] == [1.0, 4.0, 0.125]
    # consecutive increases are one spike, peaking at its last row; a rise from 0 is infinitely relative
    (s,) = ev.spikes(np.arange(5), np.array([0.0, 1.0, 1.5, 1.75, 1.0]), ev.Tolerances())
    assert (s["step"], s["peak_step"], s["height"], s["relative"]) == (1, 3, 1.75, float("inf"))
    out = rows([0.0, 1.0, 1.5, 1.75, 1.0])
    assert int(out["loss_increases"]) == 3 and int(out["loss_spikes"]) == 1


def test_signs_and_moves_are_strict_at_atol():
    """A sign needs |m| > atol and a move |Δm| > rtol·max(|m|, |m_prev|) + atol, strictly."""
    tol = ev.Tolerances(margin_atol=0.5)
    # +, 0 (−0.5 is within atol), +: the sign is kept through the 0, so no flip
    out = rows(np.ones(3), margins=[0.75, -0.5, 0.75], tol=tol)
    assert out["sign_flips"].tolist() == [0]
    out = rows(np.ones(3), margins=[0.75, -0.5 - 2.0**-40, 0.75], tol=tol)
    assert out["sign_flips"].tolist() == [2]
    # and on the positive side: +0.5 is within atol too
    out = rows(np.ones(3), margins=[-0.75, 0.5, -0.75], tol=tol)
    assert out["sign_flips"].tolist() == [0]
    # moves of exactly atol are not moves: no turn; a hair more, and every step turns
    out = rows(np.ones(4), margins=[0.0, 0.5, 0.0, 0.5], tol=tol)
    assert out["oscillations"].tolist() == [0]
    out = rows(np.ones(4), margins=[0.0, 0.5 + 2.0**-40, 0.0, 0.5 + 2.0**-40], tol=tol)
    assert out["oscillations"].tolist() == [2]
    rel = ev.Tolerances(margin_rtol=0.25)  # threshold 0.25 · max(|m|, |m_prev|)
    out = rows(np.ones(4), margins=[4.0, 5.0, 4.0, 5.0], tol=rel)  # |Δm| = 1 < 1.25: no move
    assert out["oscillations"].tolist() == [0]
    out = rows(np.ones(4), margins=[4.0, 3.0, 4.0, 3.0], tol=rel)  # |Δm| = 1 = 0.25 · 4: no move
    assert out["oscillations"].tolist() == [0]
    out = rows(np.ones(4), margins=[4.0, 2.75, 4.0, 2.75], tol=rel)  # 1.25 > 1: moves, two turns
    assert out["oscillations"].tolist() == [2]
    # a plateau is no move: up, (flat), down is one turn; up, flat, up is none
    assert rows(np.ones(4), margins=[0.0, 1.0, 1.0, 0.0])["oscillations"].tolist() == [1]
    assert rows(np.ones(4), margins=[0.0, 1.0, 1.0, 2.0])["oscillations"].tolist() == [0]
    # the first row's sign counts (right at the start, wrong later: one flip)
    assert rows(np.ones(2), margins=[1.0, -1.0])["sign_flips"].tolist() == [1]


def test_first_full_accuracy_and_full_accuracy_from_conventions():
    F, T = False, True
    out = rows(np.ones(5), full=[T, F, T, T, T])  # full at the start, lost, regained for good
    assert int(out["first_full_accuracy"]) == 0 and int(out["full_accuracy_from"]) == 2
    out = rows(np.ones(4), full=[F, T, T, F])  # the last row is not full: never for good
    assert int(out["first_full_accuracy"]) == 1 and int(out["full_accuracy_from"]) == -1
    out = rows(np.ones(3), full=[F, F, F])
    assert int(out["first_full_accuracy"]) == -1 and int(out["full_accuracy_from"]) == -1
    out = rows(np.ones(4), full=[T, T, T, T], steps=[0, 5, 10, 20])
    assert int(out["first_full_accuracy"]) == 0 and int(out["full_accuracy_from"]) == 0
    out = rows(np.ones(4), full=[F, T, F, T], steps=[0, 5, 10, 20])  # steps, not row indices
    assert int(out["first_full_accuracy"]) == 5 and int(out["full_accuracy_from"]) == 20
    with pytest.raises(ValueError, match="no rows"):
        rows(np.ones(0))


def test_rows_after_the_first_non_finite_one_are_ignored():
    F, T = False, True
    out = rows([1.0, np.nan, 0.5, 2.0], margins=[0.0, 1.0, 2.0, 3.0], full=[F, F, T, T])
    assert int(out["first_bad_step"]) == 1
    assert int(out["first_full_accuracy"]) == -1 and int(out["loss_increases"]) == 0
    out = rows([1.0, 0.5, 0.25], margins=[0.0, -np.inf, 1.0], full=[F, F, T])  # a margin −inf is bad
    assert int(out["first_bad_step"]) == 1 and int(out["first_full_accuracy"]) == -1
    out = rows([np.inf, 0.5], full=[T, T])  # bad from the start: nothing counts, full or not
    assert int(out["first_bad_step"]) == 0 and int(out["first_full_accuracy"]) == -1
    # M = 1: margins are +inf by definition (no competitor) and the run is fine
    out = rows([0.0, 0.0, 0.0], margins=[np.inf] * 3, full=[T, T, T])
    assert int(out["first_bad_step"]) == -1 and int(out["first_full_accuracy"]) == 0
    out = rows([1.0, 0.5, 2.0], margins=[0.0, 1.0, 0.5], full=[F, T, T])
    assert int(out["first_bad_step"]) == -1 and int(out["loss_increases"]) == 1


# ------------------------------------------------------------ huge steps
def test_a_huge_step_gives_a_loss_of_exactly_zero_and_no_event():
    """Orthogonal, p = (1/2, 1/2), lr = 1e4: one step moves each margin to lr·p = 5000 and the
    loss to log(1 + e^-5000) = 0 exactly; a flat loss of 0 rises nowhere."""
    problem = pt.orthogonal(np.array([0.5, 0.5]))
    run = pt.gd(problem, 1e4, 5)
    assert np.asarray(run.loss)[1:].tolist() == [0.0] * 5
    found = pa.events(run)
    assert int(found["loss_increases"]) == 0 and int(found["loss_spikes"]) == 0
    # the start is not fully right (token 1 loses its tie to class 0); step 1 is
    assert int(found["first_full_accuracy"]) == 1 and int(found["full_accuracy_from"]) == 1
    cell = run_cell(problem, jnp.asarray(1e4), 5, jax.random.key(0))
    assert int(cell["loss_increases"]) == 0 and int(cell["loss_spikes"]) == 0
    assert int(cell["first_full_accuracy"]) == 1 and float(cell["final_loss"]) == 0.0
    assert float(cell["final_min_margin"]) == 5000.0 and float(cell["max_spike"]) == 0.0


def test_a_flat_loss_in_a_sweep_counts_no_increase():
    """corr = 1, p1 = 1/2: e_1 = e_2 with different targets; the forces cancel at S = 0, so the
    scores never move and the loss stays log 2 exactly (a flat loss, at every lr)."""
    s = pt.sweep("two_particles", {"lr": [0.5, 1e3], "corr": [1.0], "p1": [0.5]}, 20,
                 metrics=["loss_increases", "loss_spikes", "first_full_accuracy", "final_loss", "max_spike"])
    assert s.config["engine"] == "cells"
    assert s.outputs["loss_increases"].ravel().tolist() == [0, 0]
    assert s.outputs["loss_spikes"].ravel().tolist() == [0, 0]
    assert s.outputs["first_full_accuracy"].ravel().tolist() == [-1, -1]  # token 2 always loses the tie
    # log1p(1) against numpy's log(2): one rounding each (an ulp of 0.69 is 1.1e-16)
    np.testing.assert_allclose(s.outputs["final_loss"].ravel(), [np.log(2.0)] * 2, rtol=2 * EPS64, atol=0)
    assert s.outputs["max_spike"].ravel().tolist() == [0.0, 0.0]


# ------------------------------------------------------------ noisy runs
def _large_spikes_by_definition(loss, factor, window):
    hot = [k >= window and loss[k] > factor * np.median(loss[k - window:k]) for k in range(len(loss))]
    return [k for k in range(len(loss)) if hot[k] and not (k > 0 and hot[k - 1])]


def test_large_spikes_against_the_definition():
    rng = np.random.default_rng(1)
    loss = 1.0 + 0.1 * rng.random(80)
    loss[[10, 30, 31, 32, 55, 79]] = [5.0, 4.0, 6.0, 5.0, 3.5, 9.0]  # 10: the first eligible index
    for factor, window in ((3.0, 10), (2.0, 5), (4.0, 20)):
        assert ev.large_spikes(loss, factor, window).tolist() == _large_spikes_by_definition(loss, factor, window)
    assert ev.large_spikes(loss, 3.0, 10).tolist() == [10, 30, 55, 79]
    # strict: exactly factor times the median is not a spike
    flat = np.ones(12)
    flat[6] = 3.0
    assert ev.large_spikes(flat, 3.0, 5).tolist() == []
    flat[6] = 3.0 + 2.0**-40
    assert ev.large_spikes(flat, 3.0, 5).tolist() == [6]
    assert ev.large_spikes(flat, 3.0, 6).tolist() == [6]  # index 6 = window: the first with a history
    assert ev.large_spikes(flat, 3.0, 7).tolist() == []  # index 6 < window: no history yet
    assert ev.large_spikes(np.ones(3), 3.0, 5).tolist() == []  # shorter than the window
    assert ev.large_spikes(np.ones(5), 3.0, 5).tolist() == []  # as long as the window: no history yet
    one = np.ones(25)
    one[20] = 3.5
    assert ev.large_spikes(one).tolist() == [20]  # defaults: factor 3, window 20
    assert ev.large_spikes(one, 3.0, 1).tolist() == [20]  # a window of one row is allowed
    for factor, window in ((1.0, 5), (3.0, 0), (3.0, 2.5)):
        with pytest.raises(ValueError, match="factor"):
            ev.large_spikes(flat, factor, window)


def test_loss_rises_and_margin_jumps_against_their_definitions():
    loss = np.array([1.0, 1.05, 1.0625, 2.0, 1.0, 1.0 + 0.0625 + 2.0**-40])
    # rise: L_k > L_{k−1} (1 + rel) + abs_tol; rel = 0.0625, abs_tol = 0 (exact products)
    want = [k for k in range(1, len(loss)) if loss[k] > loss[k - 1] * 1.0625]
    assert ev.loss_rises(loss, rel=0.0625, abs_tol=0.0).tolist() == want == [3, 5]
    assert ev.loss_rises(loss, rel=0.0, abs_tol=0.5).tolist() == [3]
    assert ev.loss_rises(loss).tolist() == [3, 5]  # defaults 5% + 1e-3
    m = np.array([[0.0, 1.0], [0.5, 1.0], [0.5, 1.0], [0.5, 1.25], [0.5, 1.5], [0.5, 1.875], [0.5, 1.0],
                  [0.5, 2.0], [4.0, 2.0]])
    # jump: |m_k − m_{k−1}| > rel · max_x |m_{k−1}(x)| for some x, rows k > skip
    def jumps(rel, skip):
        return [k for k in range(1, len(m)) if k > skip
                and np.any(np.abs(m[k] - m[k - 1]) > rel * np.abs(m[k - 1]).max())]
    for rel, skip in ((0.25, 0), (0.25, 5), (0.5, 2), (1.0, 0)):
        assert ev.margin_jumps(m, rel, skip).tolist() == jumps(rel, skip), (rel, skip)
    # rows 3 and 5 move by exactly the threshold (0.25 = 0.25 · 1, 0.375 = 0.25 · 1.5): no jump
    assert ev.margin_jumps(m, 0.25, 0).tolist() == [1, 6, 7, 8]
    assert ev.margin_jumps(m[:1]).tolist() == [] and ev.margin_jumps(m).dtype.kind == "i"
    assert ev.margin_jumps(m[:2], 0.25, 0).tolist() == [1]  # two rows: one step to compare
    assert ev.margin_jumps(m[6:9]).tolist() == []  # default skip 5 hides the first rows


# ------------------------------------------------------------ the detectors' own logic
def test_finite_rows_and_the_single_class_convention():
    inf = np.inf
    # M = 2: a margin of +inf is not a number a run can reach: the row is bad
    two = traj([1.0, 0.5, 0.25], [[0.0, 0.0], [1.0, inf], [2.0, 2.0]])
    with pytest.warns(pa.NonFiniteWarning, match="step 1"):
        assert pa.detect_cycle(two, max_period=1, tail=2) is None  # analysed on 1 row only
    assert pa.summarize(traj([1.0, 0.5, 0.25], [[0.0, 0.0], [1.0, 2.0], [2.0, 2.0]]))["finite"] is True
    with pytest.warns(pa.NonFiniteWarning):
        s = pa.summarize(two)
    assert s["first_bad"] == 1 and s["last"] == 0
    # M = 1 (final scores N × 1): margins are +inf by definition, the run is fine; −inf never is
    one = pt.Trajectory(t=jnp.arange(3.0), steps=jnp.arange(3), loss=jnp.zeros(3), zero_one=jnp.zeros(3),
                        accuracy=jnp.ones(3), margins=jnp.full((3, 3), jnp.inf), final_scores=jnp.zeros((3, 1)),
                        status=jnp.asarray(0), first_bad_step=jnp.asarray(-1), info=meta_json(dict(integrator="gd")))
    assert int(pa.events(one)["first_bad_step"]) == -1 and pa.first_full_accuracy(one) == 0
    down = pt.Trajectory(t=jnp.arange(3.0), steps=jnp.arange(3), loss=jnp.zeros(3), zero_one=jnp.zeros(3),
                         accuracy=jnp.ones(3), margins=jnp.asarray([[np.inf] * 3, [np.inf, -np.inf, np.inf],
                                                                    [np.inf] * 3]),
                         final_scores=jnp.zeros((3, 1)), status=jnp.asarray(0), first_bad_step=jnp.asarray(-1),
                         info=meta_json(dict(integrator="gd")))
    with pytest.warns(pa.NonFiniteWarning, match="step 1"):
        assert pa.summarize(down)["first_bad"] == 1
    lossy = traj([1.0, inf, 0.25], [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])  # finite margins, infinite loss
    with pytest.warns(pa.NonFiniteWarning, match="step 1"):
        assert pa.summarize(lossy)["first_bad"] == 1
    minus = traj([1.0, 0.5, 0.25], [[0.0, 0.0], [1.0, -inf], [2.0, 2.0]])
    with pytest.warns(pa.NonFiniteWarning, match="step 1"):
        assert pa.summarize(minus)["first_bad"] == 1


def test_a_one_row_run_and_two_rows():
    single = traj([0.5], [[1.0, 1.0]], accuracy=[1.0])
    assert pa.first_full_accuracy(single) == 0 and int(pa.events(single)["loss_spikes"]) == 0
    s = pa.summarize(single)
    assert s["log_slope"] is None and s["cycle"] is None and s["rows"] == 1  # t = 0 only: no slope
    two = pa.summarize(traj([0.5, 0.5], [[1.0, 1.0], [1.0, 1.0]]))
    assert two["cycle"]["period"] == 1  # two equal rows are a fixed point


def test_sgd_spike_peaks_by_the_definition():
    """A rise beyond 3x the running median of 20 rows, its peak the last row of the rise."""
    base = np.ones(30)
    plateau = base.copy()
    plateau[25:29] = [4.0, 6.0, 6.0, 2.0]  # the peak is the first 6 (a flat step is no rise)
    (s,) = pa.loss_spikes(traj(plateau, np.zeros(30), integrator="sgd"))
    assert (s.step, s.peak_step, s.height, s.relative) == (25, 26, 5.0, 5.0)
    end = base.copy()
    end[26:] = [4.0, 5.0, 6.0, 7.0]  # still rising at the last row
    (s,) = pa.loss_spikes(traj(end, np.zeros(30), integrator="sgd"))
    assert (s.step, s.peak_step, s.height) == (26, 29, 6.0)


def test_detect_cycle_tail_tolerance_and_period_in_steps():
    k = np.arange(60)
    three = np.sin(2 * np.pi * k / 3)[:, None]
    # default tail: max(4 · max_period, T // 4), at most T; the cycle's start is its first row
    c = pa.detect_cycle(traj(np.ones(60), three))
    assert c.period == 3 and c.start == 60 - 32
    c = pa.detect_cycle(traj(np.ones(200), np.sin(2 * np.pi * np.arange(200) / 3)[:, None]))
    assert c.period == 3 and c.start == 200 - 50
    short = traj(np.ones(20), three[:20])  # 20 rows: the tail is all of them, period 3 fits
    assert pa.detect_cycle(short).period == 3
    nine = np.sin(2 * np.pi * np.arange(60) / 9)[:, None]
    assert pa.detect_cycle(traj(np.ones(60), nine)) is None  # default max_period 8
    assert pa.detect_cycle(traj(np.ones(60), nine), max_period=9).period == 9
    # a tail of exactly two periods is enough; fewer rows than that never fit
    assert pa.detect_cycle(traj(np.ones(60), (-1.0) ** k), max_period=2, tail=4).period == 2
    growth = np.log1p(k)[:, None]
    assert pa.detect_cycle(traj(np.ones(60), growth), tail=4) is None
    fixed = pa.detect_cycle(traj(np.ones(60), np.ones(60), steps=5 * k), max_period=1, tail=2)
    assert fixed.period == 1 and fixed.period_steps == 5 and fixed.start == 5 * 58
    two = pa.detect_cycle(traj(np.ones(60), (-1.0) ** k, steps=5 * k), max_period=2)
    assert two.period_steps == 10
    uneven = pa.detect_cycle(traj(np.ones(6), np.ones(6), steps=[0, 1, 2, 4, 8, 16]), max_period=1)
    assert uneven.period == 1 and uneven.period_steps is None
    # |v[i] − v[i−k]| <= tol (1 + |v[i]|): 1 and 1 + 2⁻¹⁹ differ by exactly tol · (1 + 1) at tol = 2⁻²⁰
    tie = np.where(k % 2 == 0, 1.0, 1.0 + 2.0**-19)[:, None]
    assert pa.detect_cycle(traj(np.ones(60), tie), tol=2.0**-20).period == 1
    over = np.where(k % 2 == 0, 1.0, 1.0 + 2.5e-6)[:, None]  # 2.5e-6 > 1e-6 · 2: not a fixed point
    assert pa.detect_cycle(traj(np.ones(60), over), tol=1e-6).period == 2
    assert pa.detect_cycle(traj(np.ones(60), np.ones(60)), max_period=1).period == 1
    for bad in (dict(max_period=0), dict(max_period=True), dict(max_period=2.5), dict(tol=0.0), dict(tol="1"),
                dict(tail=1), dict(tail=True), dict(tail=4.0)):
        with pytest.raises(ValueError):
            pa.detect_cycle(traj(np.ones(10), np.ones(10)), **bad)


def test_log_slope_rows_and_arguments():
    t = np.array([0.0, 1.0, 10.0, 100.0])
    m = np.log(np.maximum(t, 1.0))[:, None] * 2.0  # slope 2 in log t
    tr = traj(np.ones(4), m, t=t, steps=None, integrator="flow")
    # default t_min = sqrt(t_last) = 10: the rows at 10 and 100 (t >= t_min) give the slope
    assert pa.log_slope(tr)[0] == pytest.approx(2.0, rel=1e-14)
    small = np.array([0.0, 0.25, 0.5, 1.0])  # t_last = 1: t_min = t_last / 2 keeps 0.5 and 1
    y = np.log(np.maximum(small, 1e-300))[:, None]
    y[1] = 5.0  # off the line: a t_min below 0.25 would change the slope
    assert pa.log_slope(traj(np.ones(4), y, t=small, steps=None, integrator="flow"))[0] == pytest.approx(1.0, rel=1e-14)
    with pytest.raises(ValueError, match="t > 0"):
        pa.log_slope(traj(np.ones(2), np.zeros(2), t=[0.0, 0.0], steps=None, integrator="flow"))
    for bad in (0.0, -1.0, "1"):
        with pytest.raises(ValueError, match="t_min"):
            pa.log_slope(tr, t_min=bad)


def test_plain_head_and_frozen_results():
    from particles.analysis._rows import head, plain

    assert plain(True) is True and plain("a") == "a" and plain(None) is None
    assert plain(np.bool_(False)) is False and plain(np.int64(3)) == 3 and type(plain(np.int64(3))) is int
    assert plain([1.5, float("inf"), float("nan")]) == [1.5, "inf", "nan"] and plain(np.array(2.5)) == 2.5
    assert plain({"a": np.array([1, 2]), "b": (np.float32(0.5),)}) == {"a": [1, 2], "b": [0.5]}
    tr = pt.gd(pt.two_particles(0.5, 0.75), 1.0, 5)
    h = head(tr, 3)
    assert np.array_equal(h.loss, np.asarray(tr.loss)[:3]) and np.array_equal(h.margins, np.asarray(tr.margins)[:3])
    assert h.scores is None and h.metadata == tr.metadata and h.final_scores is tr.final_scores
    spike = pa.Spike(1, 0.5, 0.25, 2)
    with pytest.raises(AttributeError):
        spike.step = 3
    cycle = pa.detect_cycle(traj([1.0, 0.5, 0.5, 0.5], [[0.0], [1.0], [1.0], [1.0]]), max_period=1, tail=2)
    assert cycle.period == 1
    with pytest.raises(AttributeError):
        cycle.period = 2
    with pytest.raises(AttributeError):
        ev.Tolerances().loss_rtol = 1.0
    assert hash(ev.Tolerances()) == hash(ev.Tolerances())  # a static field of the compiled sweep
