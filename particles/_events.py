"""Events of a run, one definition each: full accuracy, loss spikes, oscillations, sign flips.

Every path that reports an event uses this module: the sweeps (every step, inside `jit`),
the detectors of `particles.analysis` (saved rows of a [`Trajectory`][]), the scripts and
the Transformer experiments. An event is a *streaming reducer*: `init(row)` starts it at
the first row, `update(carry, row)` folds in the next one and `result(carry)` reads it.
The same code runs under `lax.scan` (jax.numpy) and in a plain loop over saved rows
(numpy), so a sweep and a saved trajectory of the same run give the same numbers.

Conventions, for every caller:

- A *row* is the state after a step; step 0 is the start. Saved rows give answers at the
  saved steps only; save every step (or sweep) for the exact step.
- *Full accuracy*: every input with p(x) > 0 is predicted right (inputs outside the loss do
  not count), argmax ties going to the first class, as [`accuracy`][].
- `first_full_accuracy`: the first row that is fully right (0 when the start already is);
  `full_accuracy_from`: the first row from which every later row is fully right (after a
  benign spike the two differ). Both are −1 when there is no such row.
- A *loss increase* is L_k − L_{k−1} > rtol·|L_{k−1}| + atol; a *loss spike* is a maximal
  run of consecutive increases; `max_spike` is max_k (L_k − min_{j≤k} L_j).
- A *margin oscillation* of token x is a change of direction of m(x); moves with
  |Δm| ≤ rtol·|m| + atol are not moves (rounding and solver error are not turns). A *sign
  flip* is a change between m > atol and m < −atol; margins within atol keep their sign.
- Rows after the first non-finite row (loss or a margin NaN/inf, margins +inf allowed when
  M = 1) are ignored; `first_bad_step` is its step, else −1.

Tolerances ([`Tolerances`][]) follow the arithmetic of the run: a few float ulps for GD and
SGD (their rounding is the only noise), the solver's rtol/atol for the gradient flow.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax.numpy as jnp
import numpy as np

# Rounding in one GD step moves a loss or a margin by a few ulps of its size; 64 ulps keeps
# that out of every count while a real rise (1e-13 relative and up) is seen.
RESOLUTION_ULPS = 64
# A flow solved at tolerance rtol/atol deviates from the true path by up to a few hundred
# times the local tolerance over a long solve (measured: 1e-7 jitter at rtol = atol = 1e-8
# near a finite minimiser); below this the saved rows do not resolve a turn.
FLOW_TOLERANCE_FACTOR = 1000


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """The resolution of a run: changes below it are noise, not events.

    **Fields:** `loss_rtol`, `loss_atol` (a loss increase must exceed
    loss_rtol·|L| + loss_atol), `margin_rtol`, `margin_atol` (a margin move must exceed
    margin_rtol·|m| + margin_atol; a sign needs |m| > margin_atol).

    >>> Tolerances.for_run("flow", "float64", rtol=1e-8, atol=1e-8).margin_atol
    1e-05
    """

    loss_rtol: float = 0.0
    loss_atol: float = 0.0
    margin_rtol: float = 0.0
    margin_atol: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            x = getattr(self, f.name)
            if not (isinstance(x, (int, float)) and math.isfinite(x) and x >= 0):
                raise ValueError(f"{f.name}={x!r} is not allowed: a finite number >= 0.")

    @classmethod
    def for_run(cls, integrator: str = "gd", dtype="float64", rtol: Optional[float] = None,
                atol: Optional[float] = None) -> "Tolerances":
        """The resolution of a run of `integrator` in `dtype` (the flow's `rtol`, `atol`).

        GD, SGD and descent on W: RESOLUTION_ULPS float ulps, relative. The flow:
        FLOW_TOLERANCE_FACTOR times its tolerances (defaults 1e-8).
        """
        eps = float(np.finfo(np.dtype(str(dtype))).eps)
        ulps = RESOLUTION_ULPS * eps
        if integrator != "flow":
            return cls(loss_rtol=ulps, loss_atol=0.0, margin_rtol=ulps, margin_atol=ulps)
        rtol = 1e-8 if rtol is None else float(rtol)
        atol = 1e-8 if atol is None else float(atol)
        f = FLOW_TOLERANCE_FACTOR
        return cls(loss_rtol=f * rtol + ulps, loss_atol=f * atol, margin_rtol=f * rtol + ulps, margin_atol=f * atol)


def tolerances_of(traj) -> Tolerances:
    """[`Tolerances.for_run`][] read off a trajectory's metadata (integrator, dtype, rtol, atol).

    **Returns:** the run's [`Tolerances`][].
    """
    meta = traj.metadata
    return Tolerances.for_run(meta.get("integrator", "gd"), meta.get("dtype", "float64"),
                              meta.get("rtol"), meta.get("atol"))


# ------------------------------------------------------------ the reducer
def row(step, loss, margins, full):
    """One row: the step, the loss, the margins (N,) and whether accuracy is full.

    **Returns:** the dict the reducer reads.
    """
    return dict(step=step, loss=loss, margins=margins, full=full)


def _finite(r, xp):
    m = r["margins"]
    # M = 1: margins are +inf by definition (no competitor); only NaN is bad then.
    return xp.isfinite(r["loss"]) & xp.all(~xp.isnan(m) & (m > -xp.inf))


def increase(prev, loss, tol: Tolerances, xp=jnp):
    """Whether the loss rose from `prev` to `loss` beyond the run's resolution.

    **Returns:** booleans, the broadcast shape.

    >>> import numpy as np
    >>> tol = Tolerances.for_run("gd")
    >>> increase(np.array([1.0, 1.0]), np.array([1.0 + 1e-15, 1.001]), tol, np).tolist()
    [False, True]
    """
    return loss - prev > tol.loss_rtol * xp.abs(prev) + tol.loss_atol


def _sign(m, tol, xp):
    return xp.where(m > tol, 1, xp.where(m < -tol, -1, 0))


def init(r, tol: Tolerances, xp=jnp):
    """The reducer's carry at the first row `r` (see the module's conventions).

    **Arguments:** `r` a [`row`][]; `tol` the run's [`Tolerances`][]; `xp` numpy or
    jax.numpy. **Returns:** the carry (a dict of arrays).

    >>> import numpy as np
    >>> tol = Tolerances.for_run("gd")
    >>> c = init(row(0, 0.69, np.array([0.0, 0.0]), False), tol, np)
    >>> c = update(c, row(1, 0.5, np.array([1.0, -0.5]), False), tol, np)
    >>> c = update(c, row(2, 0.3, np.array([2.0, 0.5]), True), tol, np)
    >>> {k: np.asarray(v).tolist() for k, v in result(c).items()}["first_full_accuracy"]
    2
    """
    ok = _finite(r, xp)
    step = xp.asarray(r["step"])
    never = xp.asarray(-1, step.dtype)
    count = xp.asarray(0).dtype  # counts are ints even when rows are times (the flow)
    zeros = xp.zeros(xp.shape(r["margins"]), count)
    full = ok & r["full"]
    return dict(
        first_full=xp.where(full, step, never),
        full_from=xp.where(full, step, never),
        increases=xp.asarray(0, count),
        spikes=xp.asarray(0, count),
        rising=xp.asarray(False),
        max_spike=xp.asarray(0.0, r["loss"].dtype if hasattr(r["loss"], "dtype") else np.float64),
        low=xp.asarray(r["loss"]),
        loss=xp.asarray(r["loss"]),
        margins=xp.asarray(r["margins"]),
        direction=zeros,
        oscillations=zeros,
        sign=xp.where(ok, _sign(xp.asarray(r["margins"]), tol.margin_atol, xp), 0).astype(count),
        sign_flips=zeros,
        first_bad=xp.where(ok, never, step),
    )


def update(c, r, tol: Tolerances, xp=jnp):
    """Fold row `r` into the carry `c`; rows after the first bad one change nothing.

    **Returns:** the new carry (see [`init`][] for an example).
    """
    live = (c["first_bad"] < 0) & _finite(r, xp)
    keep = lambda new, old: xp.where(live, new, old)  # noqa: E731
    step = xp.asarray(r["step"], c["first_full"].dtype)
    L, m, full = r["loss"], r["margins"], r["full"]
    up = increase(c["loss"], L, tol, xp)
    low = xp.minimum(c["low"], L)
    dm = m - c["margins"]
    moved = xp.abs(dm) > tol.margin_rtol * xp.maximum(xp.abs(m), xp.abs(c["margins"])) + tol.margin_atol
    direction = xp.where(moved, xp.where(dm > 0, 1, -1), c["direction"])
    turned = moved & (c["direction"] != 0) & (direction != c["direction"])
    s = _sign(m, tol.margin_atol, xp)
    flipped = (s != 0) & (c["sign"] != 0) & (s != c["sign"])
    sign = xp.where(s != 0, s, c["sign"])
    return dict(
        first_full=keep(xp.where((c["first_full"] < 0) & full, step, c["first_full"]), c["first_full"]),
        full_from=keep(xp.where(full, xp.where(c["full_from"] < 0, step, c["full_from"]), -1), c["full_from"]),
        increases=keep(c["increases"] + up, c["increases"]),
        spikes=keep(c["spikes"] + (up & ~c["rising"]), c["spikes"]),
        rising=keep(up, c["rising"]),
        max_spike=keep(xp.maximum(c["max_spike"], L - low), c["max_spike"]),
        low=keep(low, c["low"]),
        loss=keep(L, c["loss"]),
        margins=keep(m, c["margins"]),
        direction=keep(direction, c["direction"]),
        oscillations=keep(c["oscillations"] + turned, c["oscillations"]),
        sign=keep(sign, c["sign"]),
        sign_flips=keep(c["sign_flips"] + flipped, c["sign_flips"]),
        first_bad=xp.where((c["first_bad"] < 0) & ~live, step, c["first_bad"]),
    )


RESULTS = ("first_full_accuracy", "full_accuracy_from", "loss_increases", "loss_spikes", "max_spike",
           "oscillations", "sign_flips", "first_bad_step")
"""What [`result`][] reads off the carry (see the module's conventions)."""


def result(c) -> dict:
    """The events of the rows folded in so far, named as in [`RESULTS`][].

    **Returns:** a dict: steps (−1 for never) and per-token counts (N,).
    """
    return dict(
        first_full_accuracy=c["first_full"],
        full_accuracy_from=c["full_from"],
        loss_increases=c["increases"],
        loss_spikes=c["spikes"],
        max_spike=c["max_spike"],
        oscillations=c["oscillations"],
        sign_flips=c["sign_flips"],
        first_bad_step=c["first_bad"],
    )


def of_rows(steps, loss, margins, full, tol: Tolerances) -> dict:
    """The events of saved rows (numpy arrays: steps (T,), loss (T,), margins (T, N), full (T,)).

    Folds the rows in order with the same reducer as the sweeps, in numpy (a few µs a row,
    nothing to compile). **Returns:** a dict of numpy values named as in [`RESULTS`][].

    >>> import numpy as np
    >>> loss = np.array([0.7, 0.5, 0.6, 0.4, 0.3])
    >>> m = np.array([[0, 0], [1, -1], [2, -0.5], [3, 0.5], [4, 1]], float)
    >>> out = of_rows(np.arange(5), loss, m, m.min(1) > 0, Tolerances.for_run("gd"))
    >>> int(out["first_full_accuracy"]), int(out["loss_spikes"]), out["sign_flips"].tolist()
    (3, 1, [0, 1])
    """
    steps = np.asarray(steps)
    steps = steps.astype(np.int64) if np.issubdtype(steps.dtype, np.integer) else steps.astype(np.float64)
    loss = np.asarray(loss, np.float64)
    margins = np.asarray(margins, np.float64)
    full = np.asarray(full, bool)
    if len(loss) == 0:
        raise ValueError("the run has no rows: nothing to detect.")
    with np.errstate(invalid="ignore", over="ignore"):
        c = init(row(steps[0], loss[0], margins[0], full[0]), tol, np)
        for k in range(1, len(loss)):
            c = update(c, row(steps[k], loss[k], margins[k], full[k]), tol, np)
    return {k: np.asarray(v) for k, v in result(c).items()}


def spikes(steps, loss, tol: Tolerances) -> list[dict]:
    """The loss spikes of saved rows, each a dict: `step` (first row above the row before),
    `peak_step` (its highest row), `height` (peak minus the loss before the rise) and
    `relative` (height over that loss). Same [`increase`][] test as the reducer, so
    `len(spikes(...))` equals its `loss_spikes` count on the same rows.

    >>> import numpy as np
    >>> spikes(np.arange(5), np.array([1.0, 0.5, 0.8, 0.9, 0.2]), Tolerances.for_run("gd"))[0]["peak_step"]
    3
    """
    steps = np.asarray(steps)
    loss = np.asarray(loss, np.float64)
    out, k = [], 1
    with np.errstate(invalid="ignore", over="ignore"):
        up = np.zeros(len(loss), bool)
        up[1:] = increase(loss[:-1], loss[1:], tol, np)
    while k < len(loss):
        if not up[k]:
            k += 1
            continue
        j = k
        while j + 1 < len(loss) and up[j + 1]:
            j += 1
        before = loss[k - 1]
        height = float(loss[j] - before)
        out.append(dict(step=steps[k].item(), peak_step=steps[j].item(), height=height,
                        relative=height / abs(before) if before != 0 else math.inf))
        k = j + 1
    return out


# ------------------------------------------- events of noisy (minibatch) runs
def large_spikes(loss, factor: float = 3.0, window: int = 20) -> np.ndarray:
    """Indices where a loss spike starts in a noisy run: loss[k] > factor · median(loss[k−window:k]).

    For SGD and Transformer runs, whose loss jumps with every minibatch: a batch rarely
    triples the recent median loss, so only rises beyond the noise count. Consecutive such
    steps are one spike, reported at its first index; the first `window` indices (no
    history yet) are never spikes.

    **Returns:** int indices, increasing.

    >>> large_spikes([1.0] * 25 + [4.0, 5.0, 1.0], window=20).tolist()
    [25]
    """
    if not (factor > 1 and isinstance(window, int) and window >= 1):
        raise ValueError(f"factor={factor!r}, window={window!r} are not allowed: factor > 1 and an int window >= 1.")
    loss = np.asarray(loss, np.float64)
    hot = np.zeros(loss.shape, bool)
    if len(loss) > window:
        # row j is loss[j : j + window], the history of index j + window
        past = np.median(np.lib.stride_tricks.sliding_window_view(loss[:-1], window), axis=1)
        hot[window:] = loss[window:] > factor * past
    start = hot & ~np.concatenate([[False], hot[:-1]])
    return np.nonzero(start)[0]


def loss_rises(loss, rel: float = 0.05, abs_tol: float = 1e-3) -> np.ndarray:
    """Indices k where a noisy loss rises markedly: loss[k] > loss[k−1] (1 + rel) + abs_tol.

    **Returns:** int indices.

    >>> loss_rises([1.0, 1.01, 1.2]).tolist()
    [2]
    """
    loss = np.asarray(loss, np.float64)
    up = loss[1:] > loss[:-1] * (1 + rel) + abs_tol
    return np.nonzero(up)[0] + 1


def margin_jumps(margins, rel: float = 0.25, skip: int = 5) -> np.ndarray:
    """Indices k where some margin moves by more than `rel` · max_x |m_{k−1}(x)| in one step.

    `margins` (T, N); the first `skip` indices (the fast initial phase) are ignored. A jump
    followed by a slow relaxation is the oscillation of the paper's large-η memories.

    **Returns:** int indices of the rows after each jump.

    >>> margin_jumps([[0.0], [1.0], [1.1], [1.2], [1.3], [1.4], [1.5], [3.0]]).tolist()
    [7]
    """
    m = np.asarray(margins, np.float64)
    if len(m) < 2:
        return np.zeros(0, np.int64)
    scale = np.max(np.abs(m[:-1]), axis=1)
    big = np.any(np.abs(np.diff(m, axis=0)) > rel * scale[:, None], axis=1)
    big[:skip] = False
    return np.nonzero(big)[0] + 1
