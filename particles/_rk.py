"""The flow's explicit solver: Dormand–Prince 5(4) with an integral step-size controller, in
one `lax.while_loop`, stepping onto every saved time.

Why not diffrax's Tsit5 here: in the headline command (a 2 × 2 system) its import, trace
and compile took 2.1–2.3 s and the solve itself 2.5 ms; this loop takes 0.66–0.85 s to trace,
compile and solve (BENCHMARKS.md, finding 7). Implicit solvers (the stiff flows of `particles.flow`) stay with diffrax.

The controller is scipy's `RK45`, so that the two take the same steps (a test holds them
to it): the error of a step is the root mean square of the embedded error estimate over
`atol + rtol·max(|y|, |y_new|)`, a step is accepted when it is below 1, and the next step is
0.9·err^(−1/5) times this one, clipped to [0.2, 10] (and not above 1 right after a
rejection); the first step is Hairer's estimate. Unlike scipy, each saved row is the solution
at that time, not an interpolant: a step that would pass a saved time is shortened to end on
it, and the next step starts again from the length proposed before (the default 201 saved
times therefore cost at least 200 steps).
"""

from __future__ import annotations

from typing import Callable, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._status import Status

# The Dormand–Prince 5(4) tableau (Dormand & Prince 1980). Row 6 of A is the 5th-order
# weights B: its stage is the field at the step's end, reused as the next step's first (FSAL).
_C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
_A = np.zeros((7, 7))
_A[1, :1] = [1 / 5]
_A[2, :2] = [3 / 40, 9 / 40]
_A[3, :3] = [44 / 45, -56 / 15, 32 / 9]
_A[4, :4] = [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729]
_A[5, :5] = [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656]
_A[6, :6] = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]
_ERR = np.array([-71 / 57600, 0.0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40])
"""5th-order weights minus the embedded 4th-order ones: the step's error estimate / h."""

SAFETY, FACTOR_MIN, FACTOR_MAX = 0.9, 0.2, 10.0
"""The step-size controller's safety factor and its bounds on the change of step per step."""

H_MIN = 1e-12
"""A step below H_MIN·max(1, |s|) (log-time) is a collapse: the solve stops, SOLVER_FAILURE."""

NAME = "Dopri5 (particles)"
"""How results name this solver (`metadata["solver"]`), apart from diffrax's own Dopri5."""


class Dopri5(eqx.Module):
    """The solver `particles.flow` picks for explicit solves (see the module docstring)."""


def _rms(x, scale):
    return jnp.sqrt(jnp.mean(jnp.square(x / scale)))


def _first_step(field, s0, y0, f0, rtol, atol, length):
    """Hairer, Nørsett & Wanner (1993), II.4: a step whose Euler error is about the tolerance,
    at most `length` (> 0)."""
    scale = atol + rtol * jnp.abs(y0)
    d0, d1 = _rms(y0, scale), _rms(f0, scale)
    h0 = jnp.minimum(jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1), length)
    d2 = _rms(field(s0 + h0, y0 + h0 * f0) - f0, scale) / h0
    h1 = jnp.where(jnp.maximum(d1, d2) <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3),
                   (0.01 / jnp.maximum(d1, d2)) ** (1 / 5))
    return jnp.minimum(jnp.minimum(100 * h0, h1), length)


def _step(field, s, y, f, h):
    """One Dormand–Prince step of size h from (s, y) with f = field(s, y): (y_new, f_new, error)."""
    A, C = jnp.asarray(_A, y.dtype), jnp.asarray(_C, y.dtype)
    # The stages in one array and one loop: one field in the compiled program, not seven.
    K = jnp.zeros((7,) + y.shape, y.dtype).at[0].set(f)

    def stage(i, K):
        return K.at[i].set(field(s + C[i] * h, y + h * jnp.tensordot(A[i], K, axes=1)))

    K = jax.lax.fori_loop(1, 7, stage, K)
    return y + h * jnp.tensordot(A[6], K, axes=1), K[6], h * jnp.tensordot(jnp.asarray(_ERR, y.dtype), K, axes=1)


def solve(field: Callable, observe: Callable, y0, s0, s1, s_ts, rtol, atol, max_steps: int,
          steady_stop: bool = False, tick: Optional[Callable] = None):
    """Integrate dy/ds = field(s, y) from (s0, y0) to s1, saving `observe(y)` at each of `s_ts`.

    **Arguments:**

    - `field`, `observe`: functions of (s, y) and of y.
    - `s0`, `s1`, `s_ts`: start, end and the saved times (non-decreasing, in [s0, s1]).
    - `rtol`, `atol`: tolerances of the controller (and of the steady state).
    - `max_steps`: the budget of attempted steps.
    - `steady_stop`: stop once rms(field) ≤ atol + rtol·rms(y), the rule of diffrax's
      `steady_state_event`; the saved times after it then hold the final state.
    - `tick`: called (through `jax.debug.callback`) after each saved row, for a progress bar.

    **Returns:** `(rows, y_final, status, (steps, accepted, rejected), s_rest)`: rows of
    `observe` (inf past a failure), the state at s1 (or at the rest), a `Status` code, the
    step counts, and the time of the steady state (inf when none).
    """
    T = s_ts.shape[0]
    # One more target than saved rows: the solve goes on from the last saved time to s1.
    targets = jnp.append(s_ts, s1)
    f0 = field(s0, y0)
    # (A zero-length solve still needs a positive first step: it is never taken.)
    h0 = _first_step(field, s0, y0, f0, rtol, atol, jnp.where(s1 > s0, s1 - s0, 1.0))
    blank = jax.tree_util.tree_map(lambda r: jnp.full((T + 1,) + r.shape, jnp.inf, r.dtype),
                                   jax.eval_shape(observe, y0))
    zero = jnp.zeros((), jnp.int32)
    carry = dict(s=s0, y=y0, f=f0, h=h0, k=zero, rows=blank, steps=zero, accepted=zero,
                 rejected=jnp.asarray(False), failed=jnp.asarray(False), steady=jnp.asarray(False))

    def running(c):
        return (c["k"] <= T) & (c["steps"] < max_steps) & ~c["failed"] & ~c["steady"]

    def advance(c):
        s, y, k = c["s"], c["y"], c["k"]
        target = targets[k]
        gap = target - s
        h = jnp.minimum(c["h"], gap)
        y_new, f_new, err = _step(field, s, y, c["f"], h)
        e = _rms(err, atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y_new)))
        finite = jnp.isfinite(e)
        accept = finite & (e < 1)
        factor = jnp.where(finite, SAFETY * jnp.where(e > 0, e, 1e-10) ** (-1 / 5), FACTOR_MIN)
        factor = jnp.clip(factor, FACTOR_MIN, jnp.where(accept & ~c["rejected"], FACTOR_MAX, 1.0))
        # A step shortened to land on a saved time says little about the next: keep the longer.
        h_next = jnp.where(accept & (h < c["h"]), jnp.maximum(h * factor, c["h"]), h * factor)
        hit = accept & (h == gap)
        s = jnp.where(accept, jnp.where(hit, target, s + h), s)
        y = jnp.where(accept, y_new, y)
        f = jnp.where(accept, f_new, c["f"])

        def save(rows):
            if tick is not None:
                jax.debug.callback(tick)
            row = observe(y)
            return jax.tree_util.tree_map(lambda r, o: r.at[k].set(o), rows, row)

        rows = jax.lax.cond(hit, save, lambda rows: rows, c["rows"])
        moved = gap > 0  # a zero gap (a saved time repeated, or s0 itself) is no step
        steady = (accept & moved & (_rms(f, 1.0) <= atol + rtol * _rms(y, 1.0))) if steady_stop else c["steady"]
        return dict(s=s, y=y, f=f, h=jnp.where(moved, h_next, c["h"]), k=k + hit, rows=rows,
                    steps=c["steps"] + moved, accepted=c["accepted"] + (accept & moved),
                    rejected=jnp.where(moved, ~accept, c["rejected"]),
                    failed=moved & (h_next < H_MIN * jnp.maximum(1.0, jnp.abs(s))), steady=steady)

    c = jax.lax.while_loop(running, advance, carry)
    done, steady = c["k"] > T, c["steady"]
    rows = jax.tree_util.tree_map(lambda r: r[:T], c["rows"])
    if steady_stop:
        # Past a steady state the flow stays put: the saved times after it hold the final state.
        last = observe(c["y"])
        later = jnp.arange(T) >= c["k"]
        rows = jax.tree_util.tree_map(
            lambda r, o: jnp.where((steady & later).reshape((-1,) + (1,) * o.ndim), o, r), rows, last)
    status = jnp.where(done | steady,
                       jnp.where(jnp.all(jnp.isfinite(c["y"])), Status.OK, Status.NON_FINITE),
                       jnp.where(c["failed"], Status.SOLVER_FAILURE, Status.MAX_STEPS))
    stats = (c["steps"], c["accepted"], c["steps"] - c["accepted"])
    return rows, c["y"], status, stats, jnp.where(steady, c["s"], jnp.inf)
