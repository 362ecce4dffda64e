"""Detectors: the events of one saved run, read off a Trajectory with `particles.events`.

Every count here is the event of `particles.events` (the same reducer the sweeps run on
every step), folded over the saved rows with the run's resolution
(`particles.events.tolerances_of`: float ulps for GD, the solver's tolerances for the
flow). Each detector takes an unbatched [`particles.Trajectory`][] (index a batch first,
`traj[k]`) and returns numpy values or plain Python. Rows are read up to the first
non-finite row, with a [`NonFiniteWarning`][] naming the step where the analysis stopped.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Optional

import numpy as np

from particles import events as ev

from ._rows import NonFiniteWarning, finite_rows, head, plain, times  # noqa: F401  (re-exported)

__all__ = ["NonFiniteWarning", "Spike", "Cycle", "events", "loss_spikes", "sign_flips", "oscillations",
           "first_full_accuracy", "full_accuracy_from", "detect_cycle", "log_slope", "summarize"]


@dataclasses.dataclass(frozen=True)
class Spike:
    """One loss spike: a maximal run of saved rows where the loss increases.

    - `step`: the step (time, for `flow`) of the first row whose loss is above the row before.
    - `height`: the rise, loss at the peak minus loss just before the rise.
    - `relative`: `height` divided by the loss just before the rise.
    - `peak_step`: the step (time) of the highest row of the spike.
    """

    step: float
    height: float
    relative: float
    peak_step: float

    def to_json(self) -> dict:
        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Cycle:
    """A periodic end of a run: the last rows repeat with `period` saved rows.

    - `period`: the period in saved rows (1 means a fixed point: the run has converged).
    - `period_steps`: the period in steps (time, for `flow`) when the rows are evenly
      spaced, else `None`.
    - `start`: the step (time) of the first row of the tail that was checked.
    - `margins`: the margins over one period, shape (period, N); `loss`: shape (period,).
    - `amplitude`: the largest spread max − min of a margin over the period.
    - `error`: the largest mismatch |v[i] − v[i − period]| seen in the tail.
    """

    period: int
    period_steps: Optional[float]
    start: float
    margins: np.ndarray
    loss: np.ndarray
    amplitude: float
    error: float

    def to_json(self) -> dict:
        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}


def _rows(traj, who: str):
    """(steps, loss, margins, full) of the finite rows, and the run's resolution."""
    n, _ = finite_rows(traj, who)
    full = np.asarray(traj.zero_one)[:n] == 0  # exact: 0 iff every input with p > 0 is right
    return (times(traj)[:n], np.asarray(traj.loss)[:n], np.asarray(traj.margins)[:n], full), ev.tolerances_of(traj)


# ---------------------------------------------------------------- detectors
def events(traj, tol: Optional[ev.Tolerances] = None) -> dict:
    """Every event of `particles.events` over the saved rows, as numpy values.

    **Arguments:** `traj` (unbatched); `tol` the resolution (default: the run's own).

    **Returns:** a dict named as `particles.events.RESULTS` (−1 for "never").

    >>> import particles as pt, particles.analysis as pa
    >>> found = pa.events(pt.gd(pt.two_particles(0.95, 0.75), 10.0, 35))  # the benign spike
    >>> int(found["first_full_accuracy"]), int(found["full_accuracy_from"]), int(found["loss_spikes"])
    (2, 15, 7)
    """
    rows, own = _rows(traj, "events")
    if len(rows[0]) == 0:
        raise ValueError("the trajectory has no finite rows.")
    return ev.of_rows(*rows, own if tol is None else tol)


def loss_spikes(traj, tol: Optional[ev.Tolerances] = None) -> list[Spike]:
    """Loss spikes: maximal runs of saved rows where the loss increases beyond the resolution.

    GD with a stable step never increases the loss, so any spike means the step exceeded
    2/sharpness somewhere on the path. For SGD runs the population loss moves with every
    minibatch; there a spike is a rise beyond the noise: the loss tripling its running
    median over 20 rows (`particles.events.large_spikes`), reported with height and peak.

    **Arguments:** `traj` (unbatched); `tol` the resolution (default: the run's own).

    **Returns:** the spikes in order of time (an empty list for a monotone loss).

    >>> import particles as pt, particles.analysis as pa
    >>> first = pa.loss_spikes(pt.gd(pt.two_particles(0.95, 0.75), 10.0, 35))[0]
    >>> first.step, first.peak_step, round(first.height, 3)
    (1, 1, 0.47)
    """
    (steps, loss, _, _), own = _rows(traj, "loss_spikes")
    if traj.metadata.get("integrator") == "sgd" and tol is None:
        out = []
        for k in ev.large_spikes(loss):
            j = k
            while j + 1 < len(loss) and loss[j + 1] > loss[j]:
                j += 1
            height = float(loss[j] - loss[k - 1])
            out.append(Spike(plain(steps[k]), height, height / abs(loss[k - 1]), plain(steps[j])))
        return out
    return [Spike(s["step"], s["height"], s["relative"], s["peak_step"])
            for s in ev.spikes(steps, loss, own if tol is None else tol)]


def sign_flips(traj, tol: Optional[ev.Tolerances] = None) -> np.ndarray:
    """Per-token number of margin sign changes (right ↔ wrong), shape (N,), int.

    A flip is a change between m > atol and m < −atol; margins within atol (e.g. 0 at
    S = 0) keep the sign seen before them. A token learned, forgotten and learned again has 2.

    **Returns:** ints, shape (N,).

    >>> import particles as pt, particles.analysis as pa
    >>> pa.sign_flips(pt.gd(pt.two_particles(0.95, 0.75), 1.0, 300)).tolist()  # token 2: forgotten, recovered
    [0, 1]
    """
    return events(traj, tol)["sign_flips"]


def oscillations(traj, tol: Optional[ev.Tolerances] = None) -> np.ndarray:
    """Per-token number of direction changes of the margin, shape (N,), int.

    Moves within the run's resolution are not moves, so a converged flow has 0; a period-2
    cycle over T rows has about T − 2.

    **Returns:** ints, shape (N,).

    >>> import particles as pt, particles.analysis as pa
    >>> pa.oscillations(pt.gd(pt.two_particles(0.2, 0.75), 1.0, 100)).tolist()  # α < p2/p1: monotone
    [0, 0]
    """
    return events(traj, tol)["oscillations"]


def _step(x):
    return None if x < 0 else plain(x)


def first_full_accuracy(traj):
    """The first saved step (time, for `flow`) at which every input with p > 0 is right.

    **Returns:** an int step (0 when the start already is) for discrete runs, a float time
    for `flow`, or None if never. Only as fine as the saving schedule: save every step for
    the exact step.

    >>> import particles as pt, particles.analysis as pa
    >>> pa.first_full_accuracy(pt.gd(pt.two_particles(0.95, 0.75), 1.0, 100))
    52
    """
    return _step(events(traj)["first_full_accuracy"])


def full_accuracy_from(traj):
    """The first saved step (time) from which every later row is fully right; None if the last
    row is not. After a benign spike it is later than [`first_full_accuracy`][].

    **Returns:** an int step, a float time (flow), or None.

    >>> import particles as pt, particles.analysis as pa
    >>> traj = pt.gd(pt.two_particles(0.95, 0.75), 10.0, 35)
    >>> pa.first_full_accuracy(traj), pa.full_accuracy_from(traj)
    (2, 15)
    """
    return _step(events(traj)["full_accuracy_from"])


def detect_cycle(traj, max_period: int = 8, tol: float = 1e-6, tail: Optional[int] = None) -> Optional[Cycle]:
    """A period-k cycle of the final rows (margins and loss), for the smallest k ≤ max_period.

    The tail repeats with period k when |v[i] − v[i−k]| ≤ tol·(1 + |v[i]|) for every row i
    of the tail and every entry v of (margins, loss). Period 1 is a fixed point (a converged
    run); GD past the edge of stability (lr > 2/λ_max at the minimiser) locks into period 2.

    **Arguments:** `traj` (unbatched; save every step to see the period in steps);
    `max_period` (≥ 1); `tol` (> 0); `tail` rows to check (default max(4·max_period,
    T // 4), at most T; at least two periods).

    **Returns:** a [`Cycle`][], or None when no period up to `max_period` fits.

    >>> import particles as pt, particles.analysis as pa
    >>> pa.detect_cycle(pt.gd(pt.two_particles(0.5, 0.75), 1.0, 100)) is None  # log growth: no cycle
    True
    """
    if isinstance(max_period, bool) or not isinstance(max_period, (int, np.integer)) or max_period < 1:
        raise ValueError(f"max_period={max_period!r} is not allowed: it must be an int >= 1.")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol={tol!r} is not allowed: it must be a number > 0.")
    n, _ = finite_rows(traj, "detect_cycle")
    t = times(traj)[:n]
    if tail is None:
        tail = min(n, max(4 * max_period, n // 4))
    elif isinstance(tail, bool) or not isinstance(tail, (int, np.integer)) or tail < 2:
        raise ValueError(f"tail={tail!r} is not allowed: it must be an int >= 2.")
    tail = min(int(tail), n)
    m = np.asarray(traj.margins, np.float64)[n - tail:n]
    L = np.asarray(traj.loss, np.float64)[n - tail:n]
    vals = np.concatenate([m, L[:, None]], axis=1)
    tt = t[n - tail:n]
    for k in range(1, max_period + 1):
        if tail < 2 * k:
            break
        err = np.abs(vals[k:] - vals[:-k])
        if np.all(err <= tol * (1 + np.abs(vals[k:]))):
            gaps = np.diff(tt)
            even = gaps.size > 0 and np.allclose(gaps, gaps[0])
            mc = m[-k:]
            return Cycle(k, plain(k * gaps[0]) if even else None, plain(tt[0]), mc, L[-k:],
                         float(np.max(mc.max(0) - mc.min(0))), float(err.max()))
    return None


def log_slope(traj, t_min: Optional[float] = None) -> np.ndarray:
    """Per-token least-squares slope of the margin against log t over the late rows, shape (N,).

    Logarithmic growth m(t) ≈ log(c t) (orthogonal and separable problems) has slope ≈ 1;
    a converged (underparameterized) run has slope ≈ 0.

    **Arguments:** `traj` (unbatched); `t_min` (> 0): use the rows with t ≥ t_min; default
    sqrt(t_last), the later half of the run in log t.

    **Returns:** the slopes. Needs two rows with t ≥ t_min and t > 0 (else ValueError).

    >>> import particles as pt, particles.analysis as pa
    >>> [round(s, 2) for s in pa.log_slope(pt.flow(pt.orthogonal([0.5, 0.5]), 1e6)).tolist()]
    [1.0, 1.0]
    """
    n, _ = finite_rows(traj, "log_slope")
    t = np.asarray(traj.t, np.float64)[:n]
    if n == 0 or t[-1] <= 0:
        raise ValueError("log_slope needs rows at t > 0; the trajectory has none (finite).")
    if t_min is None:
        t_min = math.sqrt(t[-1]) if t[-1] > 1 else t[-1] / 2
    elif not (isinstance(t_min, (int, float, np.floating, np.integer)) and t_min > 0):
        raise ValueError(f"t_min={t_min!r} is not allowed: it must be a number > 0.")
    keep = (t >= t_min) & (t > 0)
    if keep.sum() < 2:
        raise ValueError(f"t_min={t_min!r} leaves {int(keep.sum())} rows (t_last={t[-1]:g}); log_slope needs 2.")
    x = np.log(t[keep])
    y = np.asarray(traj.margins, np.float64)[:n][keep]
    xc = x - x.mean()
    return (xc @ (y - y.mean(0))) / (xc @ xc)


def summarize(traj) -> dict:
    """A JSON-able summary of one run.

    **Returns:** a dict with `integrator`, `rows`, `last` (step or time of the last finite
    row), `finite`, `first_bad` (first step of a non-finite row, or None), final `loss`,
    `zero_one`, `accuracy`, `margins`; `spikes` (count), `largest_spike` (a [`Spike`][] as a
    dict, or None), `sign_flips`, `oscillations` (per-token lists), `first_full_accuracy`,
    `full_accuracy_from`, `cycle` (a [`Cycle`][] as a dict, or None) and `log_slope`
    (per-token list, or None). Non-finite floats appear as the strings 'nan'/'inf'. Warns
    once ([`NonFiniteWarning`][]) for a bad run.

    >>> import particles as pt, particles.analysis as pa
    >>> s = pa.summarize(pt.gd(pt.two_particles(0.95, 0.75), 10.0, 35))
    >>> s["spikes"], s["first_full_accuracy"], s["full_accuracy_from"], s["sign_flips"]
    (7, 2, 15, [2, 13])
    """
    n, bad = finite_rows(traj, "summarize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        last = (lambda a: plain(np.asarray(a)[n - 1]) if n else None)  # noqa: E731
        out = {"integrator": traj.metadata.get("integrator", "?"), "rows": int(np.shape(traj.loss)[0]),
               "last": last(times(traj)), "finite": bad is None, "first_bad": bad, "loss": last(traj.loss),
               "zero_one": last(traj.zero_one), "accuracy": last(traj.accuracy), "margins": last(traj.margins)}
        if n == 0:
            return out
        found = events(traj)
        spikes = loss_spikes(traj)
        try:
            slope = plain(log_slope(traj))
        except ValueError:
            slope = None
        cyc = detect_cycle(traj) if n >= 2 else None
        out.update(spikes=len(spikes),
                   largest_spike=max(spikes, key=lambda s: s.height).to_json() if spikes else None,
                   sign_flips=plain(found["sign_flips"]), oscillations=plain(found["oscillations"]),
                   first_full_accuracy=_step(found["first_full_accuracy"]),
                   full_accuracy_from=_step(found["full_accuracy_from"]),
                   cycle=cyc.to_json() if cyc is not None else None, log_slope=slope)
    return out
