"""Gradient flow dS/dt = -G_E diag(p) (softmax(S) - Y) G_U, solved with diffrax in log-time.

Margins grow like log t, so the solver works in s = log(1 + t): dS/ds = e^s dS/dt. On
[0, 1e6] that halves the steps against solving in t, and makes the progress meter (which
measures the fraction of [s0, s1] done) advance evenly.
"""

from __future__ import annotations

import os
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from . import _observables as obs
from . import _validate as v
from ._integrate import _record, _structure_info
from ._progress import progress_bar
from ._problem import Problem
from ._trajectory import Trajectory


def _field(s, S, problem: Problem):
    return -jnp.exp(s) * problem.direction(problem.p[:, None] * obs.residual(S, problem.Y))


def default_times(t1: float, num: int = 201) -> np.ndarray:
    """`num` times from 0 to t1, evenly spaced in log(1 + t)."""
    return np.expm1(np.linspace(0.0, np.log1p(float(t1)), num))


@eqx.filter_jit
def _solve(problem, y0, s0, s1, s_ts, rtol, atol, solver, max_steps: int, save_scores: bool, progress: bool):
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
        t0=s0,
        t1=s1,
        dt0=None,
        y0=y0,
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
    segments: Optional[int] = None,
    checkpoint=None,
    resume: Optional[Trajectory] = None,
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
    - `segments`: solve as this many consecutive solves between saved times (each segment
      starts where the last ended); needed for `checkpoint` and `resume` (default 20 then).
    - `checkpoint`: a path; the trajectory so far is written there (atomically) after each
      segment.
    - `resume`: a Trajectory of an interrupted segmented flow with the same `ts`, `t1`,
      tolerances and `segments` (e.g. `Trajectory.load(checkpoint)`); the result equals the
      uninterrupted segmented run bit for bit.
    - `progress`: a progress bar on stderr (diffrax's, measuring the fraction of log-time
      done; per segment when segmented); off when the environment sets `PARTICLES_QUIET=1`.

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
    # numpy when the times are known: eager jnp would compile a kernel per operation
    xp = np if v.is_concrete((t1, ts)) else jnp
    t1 = xp.asarray(t1, dtype)
    s1 = xp.log1p(t1)
    s_ts = xp.minimum(xp.log1p(xp.asarray(ts, dtype)), s1)
    args = (jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype), solver, max_steps, save_scores)
    info = dict(integrator="flow", rtol=_num(rtol), atol=_num(atol), solver=type(solver).__name__,
                structure=_structure_info(problem), dtype=str(dtype), log_time=True)
    if segments is not None or checkpoint is not None or resume is not None:
        return _segmented(problem, ts, s_ts, s1, args, info, segments or 20, checkpoint, resume, progress)
    rows, final, status, stats = _solve(problem, problem.S0, xp.zeros_like(s1), s1, s_ts, *args, progress)
    if v.is_concrete(stats):
        info.update(num_steps=int(stats[0]), num_accepted=int(stats[1]), num_rejected=int(stats[2]))
    return _flow_trajectory(xp.asarray(ts, dtype), rows, final, status, info)


def _flow_trajectory(ts, rows, final, status, info) -> Trajectory:
    return Trajectory(
        t=ts,
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


def _segmented(problem, ts, s_ts, s1, args, info, segments, checkpoint, resume, progress) -> Trajectory:
    """The flow as a chain of solves between saved times, each from where the last ended.

    Each segment starts afresh (initial step chosen by the controller), so a run resumed at
    a segment boundary repeats the uninterrupted segmented run bit for bit.
    """
    if not (v.is_concrete(ts) and v.is_concrete(s1)):
        raise ValueError("a segmented, checkpointed or resumed flow needs concrete ts and t1 (not traced).")
    segments = v.check_count("segments", segments, 1)
    T = len(ts)
    if not np.isclose(float(np.asarray(ts)[-1]), float(np.expm1(s1)), rtol=1e-12, atol=0):
        v.fail("ts", ts, "a segmented flow saves its final state at the last time, which must be t1")
    size = -(-T // segments)
    rows, state, done = [], problem.S0, 0
    stats = np.zeros(3, np.int64)
    if resume is not None:
        _check_resume(resume, ts, info, size)
        done = len(np.asarray(resume.t))
        state = jnp.asarray(resume.final_scores, problem.dtype)
        rows.append({k: getattr(resume, k) for k in ("loss", "zero_one", "accuracy", "margins", "scores")
                     if getattr(resume, k) is not None})
        prior = resume.metadata
        stats += [prior.get("num_steps", 0), prior.get("num_accepted", 0), prior.get("num_rejected", 0)]
    status = jnp.asarray(0)
    if resume is not None and (resume.scores is not None) != bool(args[4]):
        raise ValueError(f"resume= was saved with save_scores={resume.scores is not None}; use the same setting.")
    if done == T:
        info.update(num_steps=int(stats[0]), num_accepted=int(stats[1]), num_rejected=int(stats[2]),
                    segment_rows=size)
        return _flow_trajectory(jnp.asarray(ts, problem.dtype), rows[0], state, status, info)
    with progress_bar(total=T - done, desc="flow", unit="row", enabled=progress) as bar:
        for start in range(done, T, size):
            stop = min(start + size, T)
            s0 = s_ts[start - 1] if start > 0 else jnp.zeros_like(s1)
            new, state, status, st = _solve(problem, state, s0, s_ts[stop - 1], s_ts[start:stop], *args, False)
            rows.append(new)
            stats += np.asarray(st, np.int64)
            bar.update(stop - start)
            info.update(num_steps=int(stats[0]), num_accepted=int(stats[1]), num_rejected=int(stats[2]),
                        segment_rows=size)
            joined = jax.tree_util.tree_map(lambda *a: np.concatenate([np.asarray(x) for x in a]), *rows)
            traj = _flow_trajectory(jnp.asarray(ts[:stop], problem.dtype), joined, state, status, info)
            if checkpoint is not None:
                traj.save(checkpoint)
            if int(status) != 0:
                break
    return traj


def _check_resume(resume: Trajectory, ts, info: dict, size: int) -> None:
    theirs = resume.metadata
    if theirs.get("integrator") != "flow" or resume.batch_shape:
        raise ValueError("resume= takes an unbatched Trajectory from a segmented flow.")
    for key in ("rtol", "atol", "solver"):
        if theirs.get(key) != info.get(key):
            raise ValueError(f"resume= comes from a flow with {key}={theirs.get(key)!r}, not {info.get(key)!r}.")
    if not resume.ok:
        raise ValueError(f"resume= comes from a failed flow ({resume.message}); it cannot be continued.")
    done = np.asarray(resume.t)
    n = len(done)
    whole = n == len(ts)  # a finished run: resuming it returns it
    if (theirs.get("segment_rows") != size or (n % size and not whole) or n > len(ts)
            or not np.array_equal(done, np.asarray(ts)[:n])):
        raise ValueError("resume= was saved with other times or segments; use the same ts, t1 and segments.")


def _num(x):
    return float(x) if v.is_concrete(x) and np.ndim(x) == 0 else "traced"
