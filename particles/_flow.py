"""Gradient flow dS/dt = −G_E diag(p) (softmax(S) − Y) G_U, solved in log-time.

Two regimes need two strategies, chosen from the problem (`solver=None`):

- *Margins grow like log t* (separable problems): in s = log(1 + t) the field
  dS/ds = e^s dS/dt is smooth and non-stiff, and an explicit solver (Dormand–Prince 5(4),
  `particles._rk`: one compiled loop, about 3× quicker to compile than diffrax's) reaches
  t = 1e12 in about fifty steps when only the ends are saved (52–59 measured).
- *A finite minimiser* (d < N: the memory is too small): the flow converges like e^{−λt},
  so e^s dS/dt is stiff (its Jacobian grows like e^s) and explicit steps collapse. When
  the embeddings are known and the span of the dynamics is smaller than the scores
  (r_U·r_E < N·M; S = S_⊥ + F Kᵀ Hᵀ, see `theory.span`), the flow is solved for the
  r_U × r_E coordinates K with diffrax's implicit, L-stable Kvaerno5 (its dense Jacobian
  is (r_U r_E)², tiny for d ≤ 32) — unless the horizon is short enough for the stiffness
  to stay mild ((1 + t1) times a bound on the Hessian's λ_max ≤ `EXPLICIT_STIFFNESS`),
  where the explicit solver takes fewer, cheaper steps (45 against Kvaerno5's 291 to
  t = 100 on a 7-token memory of d = 6, saving the ends; 203 saving 201 times).

On the span coordinates a steady-state rule stops the solve once
rms(dS/ds) ≤ atol + rtol·rms(S) (the flow has converged to tolerance in log-time); the
saved times past it hold the final state.
"""

from __future__ import annotations

import os
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from . import _driver, _dynamics, _gd, _rk
from . import _validate as v
from ._problem import Problem
from ._progress import progress_bar
from ._status import Status
from ._trajectory import Trajectory, meta_json

IMPLICIT_MAX = 2048
"""Largest span dimension r_U·r_E solved with the implicit solver (dense Jacobian r²)."""

EXPLICIT_STIFFNESS = 1e3
"""Largest (1 + t1)·λ̄ for which the span coordinates are solved explicitly, λ̄ an upper
bound on the loss Hessian's λ_max: the log-time field's Jacobian is (1 + t) times the
Hessian's, and a Dormand–Prince step is stable below about 3.3 / that, so near t1 the explicit
solve needs about (1 + t1)·λ̄ / 3.3 ≤ 300 steps per unit of log-time. Above it, Kvaerno5."""

_HINTS = {
    "MAX_STEPS": "the solver's step budget ran out before t1; raise max_steps, loosen rtol/atol, or pass "
                 "solver=diffrax.Kvaerno5() if the flow approaches a finite minimiser (stiff)",
    "SOLVER_FAILURE": "the step size collapsed; loosen rtol/atol or try another diffrax solver",
}


def default_times(t1: float, num: int = 201) -> np.ndarray:
    """`num` times from 0 to t1, evenly spaced in log(1 + t).

    >>> default_times(1e6, 4).round(1).tolist()
    [0.0, 99.0, 9999.0, 1000000.0]
    """
    return np.expm1(np.linspace(0.0, np.log1p(float(t1)), num))


# ------------------------------------------------------------ coordinates
class Scores(eqx.Module):
    """The flow on the scores themselves: state S (N × M)."""

    problem: Problem

    def field(self, s, S, args):
        return _dynamics.log_time_field(s, S, self.problem)

    def scores(self, S):
        return S

    def state(self, S):
        return S


class Reduced(eqx.Module):
    """The flow on the span coordinates K (r_U × r_E): S = S_⊥ + F Kᵀ Hᵀ.

    dK/dt = Hᵀ fᵀ F with f = force(S) / (G_E, G_U) pulled back: since G_E = F Fᵀ and
    G_U = H Hᵀ, force(S) = F (dK/dt)ᵀ Hᵀ exactly, so this is the same dynamics.
    """

    problem: Problem
    F: jax.Array
    H: jax.Array
    S_perp: jax.Array

    def scores(self, K):
        return self.S_perp + self.F @ K.T @ self.H.T

    def field(self, s, K, args):
        P = self.problem
        R = P.p[:, None] * _dynamics.residual(self.scores(K), P.Y)
        return -jnp.exp(s) * (self.H.T @ R.T @ self.F)

    def state(self, S):
        # K = F⁺ (S − S_⊥) (Hᵀ)⁺ transposed; F and H have orthogonal columns.
        D = S - self.S_perp
        return (jnp.linalg.pinv(self.F) @ D @ jnp.linalg.pinv(self.H.T)).T


def _coordinates(problem: Problem, solver, t1):
    """(coordinates, solver, name) for `solver=None`: see the module docstring."""
    if problem.E is not None and problem.U is not None and v.is_concrete((problem.E, problem.U, problem.S0)):
        from .theory._sharpness import sharpness_bound
        from .theory._span import span

        sp = span(problem)
        r = sp.F.shape[1] * sp.H.shape[1]
        if r < problem.N * problem.M:
            F, H = (jnp.asarray(a, problem.dtype) for a in (sp.F, sp.H))
            S0 = problem.S0
            K0 = (jnp.linalg.pinv(F) @ S0 @ jnp.linalg.pinv(H.T)).T
            coords = Reduced(problem, F, H, S0 - F @ K0.T @ H.T)
            if solver is None:
                mild = v.is_concrete(t1) and (1 + float(t1)) * sharpness_bound(problem) <= EXPLICIT_STIFFNESS
                solver = _rk.Dopri5() if mild or r > IMPLICIT_MAX else _implicit()
            return coords, solver, "reduced"
    return Scores(problem), _rk.Dopri5() if solver is None else solver, "scores"


def _implicit():
    import diffrax  # only for stiff flows: importing it costs about 0.5 s

    return diffrax.Kvaerno5()


# ------------------------------------------------------------------ solve
@eqx.filter_jit
def _solve(coords, y0, s0, s1, s_ts, rtol, atol, solver, max_steps: int, save_scores: bool, progress: bool):
    # A steady state exists only with a finite minimiser (the span coordinates); on the
    # scores of a separable problem the margins grow forever and the event would only cost
    # compile time.
    steady_stop = isinstance(coords, Reduced)
    problem = coords.problem

    def observe(y):
        return _gd.observe(problem, coords.scores(y), save_scores)

    if isinstance(solver, _rk.Dopri5):
        rows, final, status, stats, s_rest = _rk.solve(
            lambda s, y: coords.field(s, y, None), observe,
            y0, s0, s1, s_ts, rtol, atol, max_steps, steady_stop, _tick if progress else None)
        return rows, final, status, stats, jnp.expm1(s_rest)
    import diffrax

    save = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=s_ts, fn=lambda s, y, args: observe(y)),
                                diffrax.SubSaveAt(t1=True)])
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(coords.field), solver, t0=s0, t1=s1, dt0=None, y0=y0, saveat=save,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps, throw=False,
        event=diffrax.Event(diffrax.steady_state_event(rtol=rtol, atol=atol)) if steady_stop else None,
        progress_meter=diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter(),
    )
    rows, final, s_end = sol.ys[0], sol.ys[1][-1], sol.ts[1][-1]
    steady = sol.result == diffrax.RESULTS.event_occurred
    if steady_stop:
        # Past a steady state the flow stays put: the saved times after it hold the final state.
        last = observe(final)
        after = s_ts > s_end
        rows = jax.tree_util.tree_map(
            lambda r, f: jnp.where(steady & after.reshape((-1,) + (1,) * (r.ndim - 1)), f, r), rows, last)
    ok = (sol.result == diffrax.RESULTS.successful) | steady
    status = jnp.where(ok, jnp.where(jnp.all(jnp.isfinite(final)), Status.OK, Status.NON_FINITE),
                       jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, Status.MAX_STEPS,
                                 Status.SOLVER_FAILURE))
    stats = (sol.stats["num_steps"], sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"])
    return rows, final, status, stats, jnp.where(steady, jnp.expm1(s_end), jnp.inf)


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
    checkpoint: Optional[str | os.PathLike] = None,
    resume: Optional[Trajectory] = None,
    progress: bool = False,
) -> Trajectory:
    """Gradient flow of the population loss, from `problem.S0` at t = 0 to `t1`.

    **Arguments:**

    - `problem`: the [`Problem`][].
    - `t1`: the horizon, > 0. A separable problem reaches t = 1e8 in about a hundred solver
      steps; a problem with a finite minimiser stops at its steady state (see below).
    - `ts`: times to save, increasing, in [0, t1]; default 201 times evenly spaced in
      log(1 + t).
    - `rtol`, `atol`: tolerances of the step-size controller (on the log-time solve) and
      of the steady state.
    - `solver`: `None` (the default) or a diffrax solver. By default Dormand–Prince 5(4)
      (`"Dopri5 (particles)"`: the project's own compiled loop, which lands a step on every
      saved time) on the scores, or on the span coordinates when the embeddings are known and
      span fewer dimensions than the scores (d < N: the flow converges to a finite minimiser
      and is stiff in log-time) — there diffrax's Kvaerno5 (implicit) once the horizon makes
      the stiffness matter ((1 + t1)·`theory.sharpness_bound` > `EXPLICIT_STIFFNESS`). The
      choice is in `metadata["solver"]` and `metadata["coordinates"]`. Measured to t = 1e8 on
      2 cores (BENCHMARKS.md): N = 20, d = 5, M = 4 in 1,005 steps, 0.2 s after compiling;
      N = 64, d = 8, M = 8 in 994 steps, 1.0 s; N = 256, d = 16, M = 16 in 1,126 steps and
      minutes (the implicit solver's dense Jacobian dominates).
    - `max_steps`: the solver's step budget; running out is reported as status 2
      (`Status.MAX_STEPS`) with what to change, in `traj.message`.
    - `save_scores`: also save S at every saved time.
    - `segments`: solve as this many consecutive solves between saved times (each segment
      starts where the last ended); needed for `checkpoint` and `resume` (default 20 then).
    - `checkpoint`: a path; the trajectory so far is written there (atomically) after each
      segment.
    - `resume`: a Trajectory of an interrupted segmented flow with the same `ts`, `t1`,
      tolerances and `segments` (e.g. `Trajectory.load(checkpoint)`); the result equals the
      uninterrupted segmented run bit for bit.
    - `progress`: a progress bar on stderr (saved rows done, or segments when segmented;
      diffrax's, measuring log-time, with a diffrax solver); off when the environment sets
      `PARTICLES_QUIET=1`.

    **Returns:** a [`Trajectory`][] with `t` = `ts`; `metadata["steady_state_t"]` is the time
    the flow came to rest (None when it did not). A failed solve is reported in `status`
    (never raised from inside jit); rows past a failure hold inf.

    >>> import particles as pt
    >>> traj = pt.flow(pt.orthogonal([0.5, 0.5]), 1e8)
    >>> traj.ok, traj.metadata["solver"], len(traj.t)
    (True, 'Dopri5 (particles)', 201)
    >>> pt.flow(pt.orthogonal([0.5, 0.5]), 1e8, ts=[0.0, 1e8]).metadata["num_steps"] < 100
    True
    """
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
    if v.is_concrete((t1, ts)):
        a = np.asarray(ts, np.float64)
        if not np.all(np.isfinite(a)) or a[0] < 0 or a[-1] > float(t1) * (1 + 1e-12) or np.any(np.diff(a) < 0):
            v.fail("ts", ts, f"times must be finite, non-decreasing and in [0, t1={float(t1):g}]")
    if solver is not None:
        import diffrax

        if not isinstance(solver, diffrax.AbstractSolver):
            v.fail("solver", str(solver), "None (the default) or a diffrax solver instance such as diffrax.Tsit5()")
    coords, solver, where = _coordinates(problem, solver, t1)
    # numpy when the times are known: eager jnp would compile a kernel per operation
    xp = np if v.is_concrete((t1, ts)) else jnp
    t1 = xp.asarray(t1, dtype)
    s1 = xp.log1p(t1)
    s_ts = xp.minimum(xp.log1p(xp.asarray(ts, dtype)), s1)
    args = (jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype), solver, max_steps, save_scores)
    name = _rk.NAME if isinstance(solver, _rk.Dopri5) else type(solver).__name__
    info = dict(integrator="flow", rtol=_num(rtol), atol=_num(atol), solver=name,
                coordinates=where, structure=f"E={problem.structure_E}, U={problem.structure_U}", dtype=str(dtype),
                log_time=True, hints=_HINTS)
    if segments is not None or checkpoint is not None or resume is not None:
        return _segmented(coords, ts, s_ts, s1, args, info, 20 if segments is None else segments, checkpoint,
                          resume, progress)
    y0 = coords.state(problem.S0)
    native_bar = progress and isinstance(solver, _rk.Dopri5)
    with progress_bar(len(s_ts), "flow", "row", enabled=native_bar) as bar:
        _BARS.append(bar)
        try:
            rows, final, status, stats, t_rest = _solve(coords, y0, xp.zeros_like(s1), s1, s_ts, *args, progress)
            if native_bar:
                jax.effects_barrier()  # every tick has reached the bar before it closes
        finally:
            _BARS.pop()
    if v.is_concrete(stats):
        info.update(num_steps=int(stats[0]), num_accepted=int(stats[1]), num_rejected=int(stats[2]),
                    steady_state_t=_finite_or_none(t_rest))
    return _trajectory(xp.asarray(ts, dtype), rows, coords.scores(final), status, info)


_BARS: list = []
"""The open progress bars of native solves; `_tick`, called from inside the compiled loop,
updates the newest (a fixed function, so that a bar does not force a recompilation)."""


def _tick():
    if _BARS:
        _BARS[-1].update(1)


def _trajectory(ts, rows, final_scores, status, info) -> Trajectory:
    return Trajectory(
        t=ts, loss=rows["loss"], zero_one=rows["zero_one"], accuracy=rows["accuracy"], margins=rows["margins"],
        scores=rows.get("scores"), final_scores=final_scores, status=status,
        first_bad_step=jnp.full_like(status, -1), info=meta_json(info),
    )


def _segmented(coords, ts, s_ts, s1, args, info, segments, checkpoint, resume, progress) -> Trajectory:
    """The flow as a chain of solves between saved times, each from where the last ended.

    Each segment starts afresh (initial step chosen by the controller), so a run resumed at
    a segment boundary repeats the uninterrupted segmented run bit for bit.
    """
    if not (v.is_concrete(ts) and v.is_concrete(s1)):
        raise ValueError("a segmented, checkpointed or resumed flow needs concrete ts and t1 (not traced).")
    segments = v.check_count("segments", segments, 1)
    problem, T = coords.problem, len(ts)
    if not np.isclose(float(np.asarray(ts)[-1]), float(np.expm1(s1)), rtol=1e-12, atol=0):
        v.fail("ts", ts, "a segmented flow saves its final state at the last time, which must be t1")
    size = -(-T // segments)
    info = dict(info, settings=dict(integrator="flow", rtol=info["rtol"], atol=info["atol"], solver=info["solver"],
                                    coordinates=info["coordinates"], segment_rows=size, save_scores=bool(args[4])))
    chunks = [(a, min(a + size, T)) for a in range(0, T, size)]
    stats = np.zeros(3, np.int64)
    # Segments hand over the scores (what a checkpoint saves), each starting from their state,
    # so that a resumed run repeats the uninterrupted one bit for bit.
    pieces, scores, done = [], problem.S0, 0
    if resume is not None:
        if resume.integrator != "flow" or resume.batch_shape or resume.steps is not None:
            raise ValueError("resume= takes an unbatched Trajectory from a segmented flow.")
        if not resume.ok:
            raise ValueError(f"resume= comes from a failed flow ({resume.message}); it cannot be continued.")
        n = _driver.resume_point(resume.metadata, info["settings"], resume.t, ts)
        if n % size and n != T:
            raise ValueError("resume= was saved with other segments; use the same ts, t1 and segments.")
        done = n // size if n != T else len(chunks)
        scores = jnp.asarray(resume.final_scores, problem.dtype)
        pieces.append({k: np.asarray(getattr(resume, k)) for k in ("loss", "zero_one", "accuracy", "margins", "scores")
                       if getattr(resume, k) is not None})
        prior = resume.metadata
        stats += [prior.get("num_steps", 0), prior.get("num_accepted", 0), prior.get("num_rejected", 0)]
    status, last = [jnp.asarray(Status.OK)], [None]

    def advance(scores, chunk):
        a, b = chunk
        if int(status[0]) != Status.OK:  # a failed segment ends the run: the rest is not reached
            return scores, jax.tree_util.tree_map(lambda r: np.full((b - a,) + r.shape[1:], np.inf), last[0])
        s0 = s_ts[a - 1] if a > 0 else np.zeros_like(s1)
        rows, final, st, counts, _ = _solve(coords, coords.state(scores), s0, s_ts[b - 1], s_ts[a:b], *args, False)
        stats[:] += np.asarray(counts, np.int64)
        status[0] = st
        last[0] = jax.device_get(rows)
        return coords.scores(final), last[0]

    def info_now():
        return dict(info, num_steps=int(stats[0]), num_accepted=int(stats[1]), num_rejected=int(stats[2]))

    def save_partial(scores, new, n_chunks):
        rows = _driver.join(pieces + new)
        n = len(rows["loss"])
        _trajectory(np.asarray(ts[:n]), rows, scores, status[0], info_now()).save(checkpoint)

    scores, new = _driver.drive(advance, scores, chunks, sizes=[b - a for a, b in chunks], done=done,
                               on_chunk=None if checkpoint is None else save_partial, progress=progress,
                               desc="flow", unit="row")
    rows = _driver.join(pieces + new)
    traj = _trajectory(jnp.asarray(ts, problem.dtype), rows, scores, status[0], info_now())
    if checkpoint is not None:
        traj.save(checkpoint)
    return traj


def _num(x):
    return float(x) if v.is_concrete(x) and np.ndim(x) == 0 else None


def _finite_or_none(x):
    x = float(x)
    return x if np.isfinite(x) else None
