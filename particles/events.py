"""Events of a run, one definition each (see the conventions in `particles._events`).

Re-exports the reducer (`init`, `update`, `result`, `row`), `Tolerances`, `of_rows` for
saved rows, and the events of noisy runs (`large_spikes`, `loss_rises`, `margin_jumps`).
Trajectory-level detectors that build on these live in `particles.analysis`.
"""

from ._events import (
    FLOW_TOLERANCE_FACTOR as FLOW_TOLERANCE_FACTOR,
    RESOLUTION_ULPS as RESOLUTION_ULPS,
    RESULTS as RESULTS,
    Tolerances as Tolerances,
    increase as increase,
    init as init,
    large_spikes as large_spikes,
    loss_rises as loss_rises,
    margin_jumps as margin_jumps,
    of_rows as of_rows,
    result as result,
    row as row,
    spikes as spikes,
    tolerances_of as tolerances_of,
    update as update,
)
