"""Which steps a discrete run saves: every k-th, or an explicit list such as `log_steps`."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from . import _validate as v


def log_steps(steps: int, num: int = 200) -> np.ndarray:
    """About `num` distinct steps from 0 to `steps`, log-spaced (all of them when few).

    Pass the result as `save_steps=` to save densely early and sparsely late: margins
    grow like log t, so early steps carry as much of the story as late ones.

    **Arguments:**

    - `steps`: the last step, >= 0.
    - `num`: about how many steps to keep, >= 2 (fewer when log-spacing repeats a step).

    **Returns:** an int64 array, strictly increasing, starting 0 (then 1 when `num` > 2) and
    ending at `steps`.

    >>> log_steps(1000, 8).tolist()
    [0, 1, 3, 10, 32, 100, 316, 1000]
    """
    steps = v.check_count("steps", steps, 0)
    num = v.check_count("num", num, 2)
    if steps + 1 <= num:
        return np.arange(steps + 1)
    if num == 2:
        return np.array([0, steps], np.int64)
    grid = np.unique(np.round(np.geomspace(1, steps, num - 1)).astype(np.int64))
    return np.concatenate([[0], grid])


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The saved steps of a run: row 0 is the start, then one row after each gap.

    **Fields:** `gaps` (steps between consecutive rows, int64, shape (T − 1,)) and
    `uniform` (their common value when all are equal, else None; a uniform schedule runs
    as a fixed-length inner scan).
    """

    gaps: np.ndarray
    uniform: Optional[int]

    @classmethod
    def of(cls, steps: int, save_every: int = 1, save_steps=None) -> "Schedule":
        """Every `save_every` steps (it must divide `steps`), or exactly `save_steps`."""
        steps = v.check_count("steps", steps, 0)
        if save_steps is None:
            save_every = v.check_count("save_every", save_every, 1)
            if steps % save_every:
                v.fail("save_every", save_every, f"it must divide steps={steps} so that the last row is the last step")
            return cls(np.full(steps // save_every, save_every, np.int64), save_every)
        s = np.asarray(save_steps)
        if s.ndim != 1 or not np.issubdtype(s.dtype, np.integer):
            v.fail("save_steps", save_steps, "a 1-D array of integer steps")
        if s.size == 0 or s[0] != 0 or s[-1] != steps or np.any(np.diff(s) <= 0):
            v.fail("save_steps", save_steps, f"strictly increasing steps from 0 to steps={steps}")
        gaps = np.diff(s).astype(np.int64)
        uniform = int(gaps[0]) if gaps.size and np.all(gaps == gaps[0]) else None
        return cls(gaps, uniform)

    @property
    def steps(self) -> np.ndarray:
        """The saved steps, from 0 to the last step, shape (T,)."""
        return np.concatenate([[0], np.cumsum(self.gaps)]).astype(np.int64)

    @property
    def rows(self) -> int:
        return len(self.gaps) + 1
