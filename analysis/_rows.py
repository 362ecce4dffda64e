"""Reading a Trajectory's saved rows: steps or times, the finite prefix, numpy views, JSON values."""

from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np

__all__ = ["plain", "times", "finite_rows", "head", "NonFiniteWarning"]


class NonFiniteWarning(UserWarning):
    """A trajectory holds non-finite rows; the analysis stopped before the first one."""


def plain(x):
    """Python scalars/lists for JSON; non-finite floats become the strings 'nan', 'inf', '-inf'.

    **Returns:** plain Python values. `plain([1.5, float("inf")])` is `[1.5, 'inf']`.
    """
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return plain(x.item())
    if isinstance(x, (np.ndarray, list, tuple)):
        return [plain(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _check_unbatched(traj, who: str) -> None:
    if np.ndim(traj.loss) != 1:
        raise ValueError(f"traj has batch shape {tuple(np.shape(traj.loss)[:-1])}; {who} takes one run: "
                         "index the batch first (traj[k]).")


def times(traj) -> np.ndarray:
    """Steps of the saved rows (discrete integrators), else the times t (flow).

    **Returns:** shape (T,).
    """
    return np.asarray(traj.steps if traj.steps is not None else traj.t)


def finite_rows(traj, who: str = "analysis", warn: bool = True) -> tuple[int, Optional[float]]:
    """Number of leading finite rows, and the step (time) of the first bad row (or None).

    A row is bad when its loss or a margin is not finite (with M = 1 margins are +inf by
    definition and only NaN counts).

    **Returns:** (rows before the first bad one, its step or None).
    """
    _check_unbatched(traj, who)
    loss = np.asarray(traj.loss, np.float64)
    m = np.asarray(traj.margins, np.float64)
    good = np.isfinite(loss) & np.all(~np.isnan(m) & (m > -np.inf), axis=-1)
    M = np.shape(traj.final_scores)[-1]
    if M > 1:
        good &= np.all(np.isfinite(m), axis=-1)
    bad = np.flatnonzero(~good)
    if bad.size == 0:
        return len(loss), None
    n = int(bad[0])
    at = plain(times(traj)[n])
    if warn:
        warnings.warn(f"{who}: non-finite values from step {at} (row {n}); analysing the {n} rows before it.",
                      NonFiniteWarning, stacklevel=3)
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
