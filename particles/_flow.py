"""Gradient flow dS/dt = -G_E diag(p) (softmax(S) - Y) G_U, solved with diffrax in log-time.

Margins grow like log t, so the solver works in s = log(1 + t): dS/ds = e^s dS/dt. On
[0, 1e6] that halves the steps against solving in t, and makes the progress meter (which
measures the fraction of [s0, s1] done) advance evenly.
"""

from __future__ import annotations

import os
from typing import Optional

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from . import _observables as obs
from . import _validate as v
from ._integrate import _record, _structure_info
from ._problem import Problem
from ._trajectory import Trajectory


def _field(s, S, problem: Problem):
    return -jnp.exp(s) * problem.direction(problem.p[:, None] * obs.residual(S, problem.Y))


def default_times(t1: float, num: int = 201) -> np.ndarray:
    """`num` times from 0 to t1, evenly spaced in log(1 + t)."""
    return np.expm1(np.linspace(0.0, np.log1p(float(t1)), num))


@eqx.filter_jit
def _solve(problem, s1, s_ts, rtol, atol, solver, max_steps: int, save_scores: bool, progress: bool):
    import diffrax

    save = diffrax.SaveAt(
        subs=[
            diffrax.SubSaveAt(ts=s_ts, fn=lambda s, S, args: _record(args, S, save_scores)),
            diffrax.SubSaveAt(t1=True),
        ]
    )
    meter = diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_field),
        solver,
        t0=jnp.zeros_like(s1),
        t1=s1,
        dt0=None,
        y0=problem.S0,
        args=problem,
        saveat=save,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=False,
        progress_meter=meter,
    )
    rows, final = sol.ys
    final = final[-1]
    status = jnp.where(
        sol.result == diffrax.RESULTS.successful,
        jnp.where(jnp.all(jnp.isfinite(final)), 0, 1),
        jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, 2, 3),
    )
    stats = (sol.stats["num_steps"], sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"])
    return rows, final, status, stats


def flow(
    problem: Problem,
    t1: float | Float[ArrayLike, ""],
    *,
    ts: Optional[Float[ArrayLike, " T"]] = None,
    rtol: float = 1e-8,
    atol: float = 1e-8,
    solver=None,
    max_steps: int = 16384,
    save_scores: bool = False,
    progress: bool = False,
) -> Trajectory:
    """Gradient flow of the population loss, from `problem.S0` at t = 0 to `t1`.

    **Arguments:**

    - `problem`: the [`Problem`][].
    - `t1`: the horizon, > 0 (t = 1e8 costs about a hundred solver steps).
    - `ts`: times to save, increasing, in [0, t1]; default 201 times evenly spaced in
      log(1 + t).
    - `rtol`, `atol`: tolerances of the PID step-size controller (on the log-time solve).
    - `solver`: a diffrax solver; `diffrax.Tsit5()` by default.
    - `max_steps`: the solver's step budget; running out is reported as status 2.
    - `save_scores`: also save S at every saved time.
    - `progress`: a diffrax progress bar (fraction of log-time done) on stderr; off when
      the environment sets `PARTICLES_QUIET=1`.

    **Returns:** a [`Trajectory`][] with `t` = `ts`. A failed solve is reported in
    `status` (never raised from inside jit); rows past a failure hold inf.
    """
    import diffrax

    progress = progress and os.environ.get("PARTICLES_QUIET") != "1"
    v.check_positive("t1", t1)
    v.check_positive("rtol", rtol)
    v.check_positive("atol", atol)
    max_steps = v.check_count("max_steps", max_steps, 1)
    dtype = problem.dtype
    if ts is None:
        if not v.is_concrete(t1):
            raise ValueError("t1 is traced (under jit/vmap): pass ts= explicitly.")
        ts = default_times(float(t1))
    if np.ndim(ts) != 1 or np.shape(ts)[0] < 1:
        raise ValueError(f"ts has shape {np.shape(ts)}; expected a non-empty vector of times.")
    if v.is_concrete(ts) and v.is_concrete(t1):
        a = np.asarray(ts, np.float64)
        if not np.all(np.isfinite(a)) or a[0] < 0 or a[-1] > float(t1) * (1 + 1e-12) or np.any(np.diff(a) < 0):
            v.fail("ts", ts, f"times must be finite, non-decreasing and in [0, t1={float(t1):g}]")
    solver = diffrax.Tsit5() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractSolver):
        v.fail("solver", str(solver), "a diffrax solver instance such as diffrax.Tsit5()")
    t1 = jnp.asarray(t1, dtype)
    s1 = jnp.log1p(t1)
    s_ts = jnp.minimum(jnp.log1p(jnp.asarray(ts, dtype)), s1)
    rows, final, status, stats = _solve(
        problem, s1, s_ts, jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype), solver, max_steps,
        save_scores, progress,
    )
    info = dict(integrator="flow", rtol=_num(rtol), atol=_num(atol), solver=type(solver).__name__,
                structure=_structure_info(problem), dtype=str(dtype), log_time=True)
    if v.is_concrete(stats):
        info.update(num_steps=int(stats[0]), num_accepted=int(stats[1]), num_rejected=int(stats[2]))
    return Trajectory(
        t=jnp.asarray(ts, dtype),
        loss=rows["loss"],
        zero_one=rows["zero_one"],
        accuracy=rows["accuracy"],
        margins=rows["margins"],
        scores=rows.get("scores"),
        final_scores=final,
        status=status,
        first_bad_step=jnp.full_like(status, -1),
        info=tuple(info.items()),
    )


def _num(x):
    return float(x) if v.is_concrete(x) and np.ndim(x) == 0 else "traced"
