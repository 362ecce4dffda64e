"""Detectors: read the events of one run (loss spikes, forgotten tokens, cycles) off a Trajectory.

Every detector takes an unbatched [`particles.Trajectory`][] (index a batched one first,
`traj[k]`) and returns numpy values. Rows are read in order up to the first non-finite row
(NaN/inf loss, or NaN/inf margins when M > 1): a diverged run is analysed on its finite
prefix, and the detector warns with a [`NonFiniteWarning`][] naming the step where it
stopped.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Optional

import numpy as np

__all__ = [
    "NonFiniteWarning",
    "Spike",
    "Cycle",
    "loss_spikes",
    "sign_flips",
    "oscillations",
    "first_full_accuracy",
    "detect_cycle",
    "log_slope",
    "summarize",
]


class NonFiniteWarning(UserWarning):
    """A trajectory holds non-finite rows; the analysis stopped before the first one."""


@dataclasses.dataclass(frozen=True)
class Spike:
    """One loss spike: a run of consecutive saved rows where the loss increases.

    - `step`: the step (time, for `flow`) of the first row whose loss is above the row before.
    - `height`: the absolute rise, loss at the peak minus loss just before the rise.
    - `relative`: `height` divided by the loss just before the rise.
    - `peak_step`: the step (time) of the highest row of the spike.
    """

    step: float
    height: float
    relative: float
    peak_step: float

    def to_json(self) -> dict:
        return {k: _plain(v) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class Cycle:
    """A periodic end of a run: the last rows repeat with `period` saved rows.

    - `period`: the period in saved rows (1 means a fixed point: the run has converged).
      With rows saved every k steps, the period in steps divides `period * k`.
    - `period_steps`: the period in steps (time, for `flow`) when the saved rows are evenly
      spaced, else `None`.
    - `start`: the step (time) of the first row of the tail where the repetition was checked.
    - `margins`: the margins over one period, shape (period, N).
    - `loss`: the loss over one period, shape (period,).
    - `amplitude`: the largest spread max - min of a margin over the period (0 for a fixed point).
    - `error`: the largest mismatch |v[i] - v[i - period]| seen in the tail (<= the tolerance).
    """

    period: int
    period_steps: Optional[float]
    start: float
    margins: np.ndarray
    loss: np.ndarray
    amplitude: float
    error: float

    def to_json(self) -> dict:
        return {
            "period": self.period,
            "period_steps": _plain(self.period_steps),
            "start": _plain(self.start),
            "margins": _plain(self.margins),
            "loss": _plain(self.loss),
            "amplitude": _plain(self.amplitude),
            "error": _plain(self.error),
        }


# ------------------------------------------------------------------ helpers
def _plain(x):
    """Python scalars/lists for JSON; non-finite floats become the strings 'nan', 'inf', '-inf'."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (np.ndarray, list, tuple)):
        return [_plain(v) for v in np.asarray(x).tolist()] if isinstance(x, np.ndarray) else [_plain(v) for v in x]
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _check_unbatched(traj, who: str) -> None:
    if np.ndim(traj.loss) != 1:
        raise ValueError(
            f"traj has batch shape {tuple(np.shape(traj.loss)[:-1])}; {who} takes one run: "
            "index the batch first (traj[k])."
        )


def times(traj) -> np.ndarray:
    """Steps of the saved rows (discrete integrators), else the times t (flow)."""
    return np.asarray(traj.steps if traj.steps is not None else traj.t)


def finite_rows(traj, who: str = "analysis", warn: bool = True) -> tuple[int, Optional[float]]:
    """Number of leading finite rows, and the step (time) of the first bad row (or None).

    A row is bad when its loss is not finite, or (with M > 1 classes) a margin is not finite.
    With M = 1 margins are +inf by definition and only NaN counts as bad.
    """
    _check_unbatched(traj, who)
    loss = np.asarray(traj.loss, np.float64)
    m = np.asarray(traj.margins, np.float64)
    M = np.shape(traj.final_scores)[-1]
    good = np.isfinite(loss) & (np.all(np.isfinite(m), axis=-1) if M > 1 else ~np.any(np.isnan(m), axis=-1))
    bad = np.flatnonzero(~good)
    if bad.size == 0:
        return len(loss), None
    n = int(bad[0])
    at = _plain(times(traj)[n])
    if warn:
        warnings.warn(
            f"{who}: non-finite values from step {at} (row {n}); analysing the {n} rows before it.",
            NonFiniteWarning,
            stacklevel=3,
        )
    return n, at


class head:
    """The first `n` rows of a Trajectory, as numpy arrays (duck-typed for the detectors)."""

    _ROWS = ("t", "steps", "loss", "zero_one", "accuracy", "margins", "scores", "W")

    def __init__(self, traj, n: int):
        self._traj, self._n = traj, int(n)

    def __getattr__(self, name):
        value = getattr(self._traj, name)
        if name in self._ROWS and value is not None:
            return np.asarray(value)[: self._n]
        return value


def _prefix(traj, who: str):
    n, _ = finite_rows(traj, who)
    return n, times(traj)[:n]


# ---------------------------------------------------------------- detectors
def loss_spikes(traj, rel_tol: float = 1e-12) -> list[Spike]:
    """Loss spikes: maximal runs of consecutive saved rows where the loss increases.

    A row counts as an increase when L[i] - L[i-1] > rel_tol * |L[i-1]| (so rounding noise
    at a converged loss is ignored). Consecutive increases are merged into one [`Spike`][].
    Gradient descent with a stable step never increases the loss, so any spike means the
    step size exceeded 2 / sharpness somewhere on the path.

    **Arguments:**

    - `traj`: an unbatched Trajectory.
    - `rel_tol`: the relative rise below which a row is not an increase, >= 0.

    **Returns:** the spikes in order of time (an empty list for a monotone loss).
    """
    if not (isinstance(rel_tol, (int, float)) and rel_tol >= 0 and math.isfinite(rel_tol)):
        raise ValueError(f"rel_tol={rel_tol!r} is not allowed: it must be a finite number >= 0.")
    n, t = _prefix(traj, "loss_spikes")
    L = np.asarray(traj.loss, np.float64)[:n]
    up = np.zeros(n, bool)
    if n > 1:
        up[1:] = (L[1:] - L[:-1]) > rel_tol * np.abs(L[:-1])
    spikes = []
    i = 1
    while i < n:
        if not up[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and up[j + 1]:
            j += 1
        before = L[i - 1]
        height = L[j] - before
        spikes.append(Spike(step=_plain(t[i]), height=float(height),
                            relative=float(height / abs(before)) if before != 0 else math.inf,
                            peak_step=_plain(t[j])))
        i = j + 1
    return spikes


def _signs(m: np.ndarray) -> np.ndarray:
    """Sign of each margin, zeros replaced by the last non-zero sign before them (0 if none)."""
    s = np.sign(m)
    if s.shape[0] == 0:
        return s
    rows = np.arange(s.shape[0]).reshape((-1,) + (1,) * (s.ndim - 1))
    last = np.maximum.accumulate(np.where(s != 0, rows, 0), axis=0)
    return np.take_along_axis(s, last, axis=0)


def sign_flips(traj) -> np.ndarray:
    """Per-token number of margin sign changes (correct <-> mispredicted), shape (N,), int.

    A flip is a change between a strictly positive and a strictly negative margin; a margin
    of exactly 0 (e.g. at S = 0) keeps the sign seen before it, so leaving 0 is not a flip.
    A token that is learned, forgotten and learned again has 2 flips.
    """
    n, _ = _prefix(traj, "sign_flips")
    s = _signs(np.asarray(traj.margins, np.float64)[:n])
    if n < 2:
        return np.zeros(s.shape[-1], np.int64)
    return np.sum((s[1:] * s[:-1]) < 0, axis=0).astype(np.int64)


def oscillations(traj, tol: float = 0.0) -> np.ndarray:
    """Per-token number of direction changes of the margin (its interior local extrema), shape (N,).

    Consecutive differences with |Δm| <= tol are ignored (a plateau is not a turn). A
    monotone margin has 0; a period-2 cycle over T rows has about T - 2.
    """
    n, _ = _prefix(traj, "oscillations")
    m = np.asarray(traj.margins, np.float64)[:n]
    if n < 3:
        return np.zeros(m.shape[-1], np.int64)
    dm = np.diff(m, axis=0)
    dm = np.where(np.abs(dm) > tol, dm, 0.0)
    return np.sum((_signs(dm)[1:] * _signs(dm)[:-1]) < 0, axis=0).astype(np.int64)


def first_full_accuracy(traj, tol: float = 1e-12):
    """The first saved step (time, for `flow`) with accuracy >= 1 - tol, or None if never.

    **Returns:** an int step for discrete integrators, a float time for `flow`, or None.
    The answer is only as fine as the saving schedule: save every step for the exact step.
    """
    n, t = _prefix(traj, "first_full_accuracy")
    acc = np.asarray(traj.accuracy, np.float64)[:n]
    hit = np.flatnonzero(acc >= 1.0 - tol)
    return None if hit.size == 0 else _plain(t[hit[0]])


def detect_cycle(traj, max_period: int = 8, tol: float = 1e-6, tail: Optional[int] = None) -> Optional[Cycle]:
    """A period-k cycle of the final rows (margins and loss), for the smallest k <= max_period.

    The tail repeats with period k when |v[i] - v[i-k]| <= tol * (1 + |v[i]|) for every row i
    of the tail and every entry v of (margins, loss). Period 1 is a fixed point (a converged
    run); GD past the edge of stability (lr > 2/λ_max at the minimizer) locks into period 2.
    Margins that keep growing like log t are not a cycle.

    **Arguments:**

    - `traj`: an unbatched Trajectory; rows are saved rows, so save every step to see the
      period in steps.
    - `max_period`: the longest period tried, >= 1.
    - `tol`: the relative tolerance, > 0.
    - `tail`: how many final rows to check; default max(4 * max_period, T // 4), at most T.
      It must hold at least two periods.

    **Returns:** a [`Cycle`][], or None when no period up to `max_period` fits.
    """
    if isinstance(max_period, bool) or not isinstance(max_period, (int, np.integer)) or max_period < 1:
        raise ValueError(f"max_period={max_period!r} is not allowed: it must be an int >= 1.")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol={tol!r} is not allowed: it must be a number > 0.")
    n, t = _prefix(traj, "detect_cycle")
    if tail is None:
        tail = min(n, max(4 * max_period, n // 4))
    elif isinstance(tail, bool) or not isinstance(tail, (int, np.integer)) or tail < 2:
        raise ValueError(f"tail={tail!r} is not allowed: it must be an int >= 2.")
    tail = min(int(tail), n)
    m = np.asarray(traj.margins, np.float64)[n - tail:n]
    L = np.asarray(traj.loss, np.float64)[n - tail:n]
    v = np.concatenate([m, L[:, None]], axis=1)
    tt = t[n - tail:n]
    for k in range(1, max_period + 1):
        if tail < 2 * k:
            break
        err = np.abs(v[k:] - v[:-k])
        if np.all(err <= tol * (1 + np.abs(v[k:]))):
            gaps = np.diff(tt)
            even = gaps.size > 0 and np.allclose(gaps, gaps[0])
            mc = m[-k:]
            return Cycle(
                period=k,
                period_steps=_plain(k * gaps[0]) if even else None,
                start=_plain(tt[0]),
                margins=mc,
                loss=L[-k:],
                amplitude=float(np.max(mc.max(0) - mc.min(0))),
                error=float(err.max()),
            )
    return None


def log_slope(traj, t_min: Optional[float] = None) -> np.ndarray:
    """Per-token least-squares slope of the margin against log t over the late rows, shape (N,).

    Logarithmic growth m(t) ≈ log(c t) (orthogonal and separable problems) has slope ≈ 1;
    a converged (underparameterized) run has slope ≈ 0.

    **Arguments:**

    - `traj`: an unbatched Trajectory.
    - `t_min`: use the rows with t >= t_min (> 0); default sqrt(t_last), the later half of
      the run in log t when it starts near t = 1.

    **Returns:** the slopes. Needs two rows with t >= t_min and t > 0 (else ValueError).
    """
    n, _ = _prefix(traj, "log_slope")
    t = np.asarray(traj.t, np.float64)[:n]
    if n == 0 or t[-1] <= 0:
        raise ValueError("log_slope needs rows at t > 0; the trajectory has none (finite).")
    if t_min is None:
        t_min = math.sqrt(t[-1]) if t[-1] > 1 else t[-1] / 2
    elif not (isinstance(t_min, (int, float, np.floating, np.integer)) and t_min > 0):
        raise ValueError(f"t_min={t_min!r} is not allowed: it must be a number > 0.")
    keep = (t >= t_min) & (t > 0)
    if keep.sum() < 2:
        raise ValueError(
            f"t_min={t_min!r} leaves {int(keep.sum())} rows (t_last={t[-1]:g}); log_slope needs at least 2."
        )
    x = np.log(t[keep])
    y = np.asarray(traj.margins, np.float64)[:n][keep]
    xc = x - x.mean()
    return (xc @ (y - y.mean(0))) / (xc @ xc)


def summarize(traj) -> dict:
    """A JSON-able summary of one run.

    **Returns:** a dict with `integrator`, `rows`, `last` (step or time of the last finite
    row), `finite` (False when the run has non-finite rows), `first_bad` (their first step),
    `loss`, `zero_one`, `accuracy`, `margins` (final values), `spikes` (count),
    `largest_spike` (a [`Spike`][] as a dict, or None), `sign_flips`, `oscillations`
    (per-token lists), `first_full_accuracy`, `cycle` (a [`Cycle`][] as a dict, or None) and
    `log_slope` (per-token list, or None when fewer than two late rows). Non-finite floats
    appear as the strings 'nan'/'inf'. Warns once ([`NonFiniteWarning`][]) for a bad run.
    """
    n, bad = finite_rows(traj, "summarize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonFiniteWarning)
        spikes = loss_spikes(traj)
        try:
            slope = _plain(log_slope(traj))
        except ValueError:
            slope = None
        cyc = detect_cycle(traj) if n >= 2 else None
        out = {
            "integrator": traj.metadata.get("integrator", "?"),
            "rows": int(np.shape(traj.loss)[0]),
            "last": _plain(times(traj)[n - 1]) if n else None,
            "finite": bad is None,
            "first_bad": bad,
            "loss": _plain(np.asarray(traj.loss)[n - 1]) if n else None,
            "zero_one": _plain(np.asarray(traj.zero_one)[n - 1]) if n else None,
            "accuracy": _plain(np.asarray(traj.accuracy)[n - 1]) if n else None,
            "margins": _plain(np.asarray(traj.margins)[n - 1]) if n else None,
            "spikes": len(spikes),
            "largest_spike": max(spikes, key=lambda s: s.height).to_json() if spikes else None,
            "sign_flips": _plain(sign_flips(traj)),
            "oscillations": _plain(oscillations(traj)),
            "first_full_accuracy": first_full_accuracy(traj),
            "cycle": cyc.to_json() if cyc is not None else None,
            "log_slope": slope,
        }
    return out
