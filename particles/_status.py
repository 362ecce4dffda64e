"""How a run ended: one enum for every integrator, sweep and result file."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """The end of a run. Results store it as an int array (one per batch member or cell).

    - `OK` (0): the run reached its last step (or time).
    - `NON_FINITE` (1): the state became NaN or inf; `first_bad_step` says when.
    - `MAX_STEPS` (2): the flow's solver used up `max_steps` before the horizon.
    - `SOLVER_FAILURE` (3): the flow's solver failed otherwise (step size underflow, …).

    >>> Status(2).describe()
    'max_steps reached'
    """

    OK = 0
    NON_FINITE = 1
    MAX_STEPS = 2
    SOLVER_FAILURE = 3

    def describe(self) -> str:
        return _TEXT[self]


_TEXT = {
    Status.OK: "ok",
    Status.NON_FINITE: "non-finite values",
    Status.MAX_STEPS: "max_steps reached",
    Status.SOLVER_FAILURE: "solver failure",
}
