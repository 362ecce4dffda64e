"""Discrete integrators: full-batch GD and minibatch SGD in score space, GD on W itself.

Each run is one compiled `lax.scan` (outer scan over saved rows, inner loop over the steps
between rows). Hyper-parameters are arrays, so changing them never recompiles, and a 1-D
array of learning rates is run as a vmapped batch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from . import _observables as obs
from . import _validate as v
from ._problem import Problem
from ._progress import progress_bar
from ._trajectory import Trajectory


def log_steps(steps: int, num: int = 200) -> np.ndarray:
    """About `num` distinct integers from 0 to `steps`, log-spaced (all of them when few).

    Pass the result as `save_steps=` to save densely early and sparsely late.
    """
    steps = v.check_count("steps", steps, 0)
    num = v.check_count("num", num, 2)
    if steps + 1 <= num:
        return np.arange(steps + 1)
    grid = np.unique(np.round(np.geomspace(1, steps, num - 1)).astype(np.int64))
    return np.concatenate([[0], grid])


# -------------------------------------------------------------- save schedule
@dataclasses.dataclass(frozen=True)
class _Schedule:
    gaps: np.ndarray  # steps between consecutive saved rows (row 0 is the start)
    uniform: Optional[int]  # the common gap when every gap is equal

    @property
    def steps(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.gaps)]).astype(np.int64)


def _schedule(steps: int, save_every: int, save_steps) -> _Schedule:
    steps = v.check_count("steps", steps, 0)
    if save_steps is None:
        save_every = v.check_count("save_every", save_every, 1)
        if steps % save_every:
            v.fail("save_every", save_every, f"it must divide steps={steps} so that the last row is the last step")
        n = steps // save_every
        return _Schedule(np.full(n, save_every, np.int64), save_every)
    s = np.asarray(save_steps)
    if s.ndim != 1 or not np.issubdtype(s.dtype, np.integer):
        v.fail("save_steps", save_steps, "a 1-D array of integer steps")
    if s.size == 0 or s[0] != 0 or s[-1] != steps or np.any(np.diff(s) <= 0):
        v.fail("save_steps", save_steps, f"strictly increasing steps from 0 to steps={steps}")
    gaps = np.diff(s).astype(np.int64)
    uniform = int(gaps[0]) if gaps.size and np.all(gaps == gaps[0]) else None
    return _Schedule(gaps, uniform)


# ---------------------------------------------------------------- the driver
def _record(problem: Problem, S, save_scores: bool) -> dict:
    row = dict(
        loss=obs.loss(S, problem.p, problem.Y),
        zero_one=obs.zero_one(S, problem.p, problem.Y),
        accuracy=obs.accuracy(S, problem.p, problem.Y),
        margins=obs.margins(S, problem.Y),
    )
    if save_scores:
        row["scores"] = S
    return row


def _finite(state) -> Array:
    leaves = [x for x in jax.tree_util.tree_leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


class _Stepper(eqx.Module):
    """One integrator: `advance(state, k)` takes step k, `observe(state)` saves a row.

    Arrays (the problem, the rate) are dynamic and static fields are hashed, so a second
    call with new values reuses the compiled loop.
    """

    def advance(self, state, k):
        raise NotImplementedError

    def observe(self, state) -> dict:
        raise NotImplementedError

    def scores(self, state):
        raise NotImplementedError

    def finite(self, state) -> Array:
        """Whether the state (and what is observed of it) is finite."""
        return _finite(state)


def _scan_rows(stepper: _Stepper, carry, gaps, uniform: Optional[int]):
    """Advance `carry = (state, step, first_bad)` through `gaps`, observing after each gap.

    Finiteness is checked once per saved row, not per step (a full pass over the state that
    cost ~18% of a memory-bound step). A non-finite state stays non-finite, so a bad row is
    replayed from its start, checking every step, to find the exact first bad step.
    """

    def steps(c, n, check: bool):
        def one(c):
            state, k, bad = c
            new = stepper.advance(state, k)
            if check:
                bad = jnp.where((bad < 0) & ~stepper.finite(new), k + 1, bad)
            return new, k + 1, bad

        if uniform is not None:
            c, _ = jax.lax.scan(lambda c, _: (one(c), None), c, None, length=uniform)
            return c
        return jax.lax.fori_loop(0, n, lambda _, c: one(c), c)

    def row(c, gap):
        end = steps(c, gap, check=False)
        went_bad = (c[2] < 0) & ~stepper.finite(end[0])
        bad = jax.lax.cond(went_bad, lambda: steps(c, gap, check=True)[2], lambda: c[2])
        end = (end[0], end[1], bad)
        return end, stepper.observe(end[0])

    return jax.lax.scan(row, carry, gaps)


_run_chunk = eqx.filter_jit(_scan_rows)


def _first_row(stepper: _Stepper, state) -> dict:
    return jax.tree_util.tree_map(lambda a: a[None], stepper.observe(state))


@eqx.filter_jit
def _observe_start(stepper: _Stepper, state):
    """Row 0, compiled once: eagerly it would compile one kernel per operation."""
    return _first_row(stepper, state)


@jax.jit
def _concat(pieces):
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *pieces)


@eqx.filter_jit
def _run_whole(stepper: _Stepper, state0, gaps, uniform: Optional[int]):
    """A run without chunks (no progress bar, checkpoint or resume) as one compiled call.

    Row 0, the scan and the joining of rows in one program: done separately, each small
    operation would compile a kernel of its own (a tenth of a second in all, per call site).
    """
    carry, rows = _scan_rows(stepper, (state0, _int(0), _int(-1)), gaps, uniform)
    rows = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), _first_row(stepper, state0), rows)
    return carry, rows, _status(carry[2]), stepper.scores(carry[0])


def _status(bad):
    return (bad >= 0).astype(bad.dtype)


def _int(x):
    return jnp.asarray(x, jnp.int64 if jax.config.jax_enable_x64 else jnp.int32)


def _rows_of(traj: Trajectory) -> dict:
    rows = dict(loss=traj.loss, zero_one=traj.zero_one, accuracy=traj.accuracy, margins=traj.margins)
    if traj.scores is not None:
        rows["scores"] = traj.scores
    if traj.W is not None:
        rows["W"] = traj.W
    return rows


def _trajectory(problem, stepper, carry, rows, schedule, n_rows, info: dict, status=None, final=None) -> Trajectory:
    state, _, bad = carry
    steps = schedule.steps[:n_rows]  # numpy: known before the run, nothing to compile
    return Trajectory(
        t=steps.astype(np.dtype(problem.dtype)),
        steps=steps,
        loss=rows["loss"],
        zero_one=rows["zero_one"],
        accuracy=rows["accuracy"],
        margins=rows["margins"],
        scores=rows.get("scores"),
        W=rows.get("W"),
        final_scores=stepper.scores(state) if final is None else final,
        status=_status(bad) if status is None else status,
        first_bad_step=bad,
        info=tuple(info.items()),
    )


def _start(problem: Problem, stepper, state0, schedule: _Schedule, info: dict, resume: Optional[Trajectory]):
    """The carry and rows to start from: the initial state, or the end of `resume`."""
    if resume is None:
        return (state0, _int(0), _int(-1)), _observe_start(stepper, state0), 1
    if resume.steps is None or resume.batch_shape:
        raise ValueError("resume= takes an unbatched Trajectory from gd or sgd (not flow, not a batch).")
    theirs, ours = resume.metadata, info
    for key in ("integrator", "lr", "batch_size", "seed"):
        if key in ours and theirs.get(key) != ours.get(key) and "traced" not in (theirs.get(key), ours.get(key)):
            raise ValueError(f"resume= comes from a run with {key}={theirs.get(key)!r}, not {ours.get(key)!r}.")
    if not resume.ok:
        raise ValueError(f"resume= comes from a failed run ({resume.message}); it cannot be continued.")
    done = np.asarray(resume.steps)
    n = len(done)
    if n > len(schedule.steps) or not np.array_equal(done, schedule.steps[:n]):
        raise ValueError(
            f"resume= saved steps {done[:3].tolist()}..{done[-1]} are not a prefix of this run's save "
            f"schedule (steps={int(schedule.steps[-1])}); use the same steps and save settings."
        )
    v.check_shape("resume.final_scores", resume.final_scores, (problem.N, problem.M))
    saved = set(_rows_of(resume))
    wanted = set(jax.eval_shape(stepper.observe, state0))
    if saved != wanted:
        raise ValueError(f"resume= saved {sorted(saved)} but this run saves {sorted(wanted)}; "
                         "use the same save_scores (and save_weights) as the interrupted run.")
    state = jnp.asarray(resume.final_scores, problem.dtype)
    return (state, _int(done[-1]), _int(-1)), _rows_of(resume), n


def _run(
    problem: Problem,
    stepper: _Stepper,
    state0,
    schedule: _Schedule,
    info: dict,
    *,
    resume: Optional[Trajectory] = None,
    progress: bool = False,
    checkpoint=None,
    desc: str = "gd",
) -> Trajectory:
    """Run the save schedule (from `resume` when given) and build the Trajectory.

    With a progress bar or a checkpoint file the run is split into about 50 chunks of equal
    size (one compilation); after each chunk the trajectory so far is written atomically to
    `checkpoint`, so an interrupted run loses at most one chunk.
    """
    if resume is None and not progress and checkpoint is None:
        carry, rows, status, final = _run_whole(stepper, state0, schedule.gaps, schedule.uniform)
        return _trajectory(problem, stepper, carry, rows, schedule, len(schedule.steps), info, status, final)
    carry, rows, done = _start(problem, stepper, state0, schedule, info, resume)
    gaps = schedule.gaps[done - 1 :]
    n = len(gaps)
    size = max(1, n if (not progress and checkpoint is None) else math.ceil(n / 50))
    pieces = [rows]
    with progress_bar(total=int(gaps.sum()), desc=desc, unit="step", enabled=progress) as bar:
        for start in range(0, n, size):
            chunk = gaps[start : start + size]
            carry, new_rows = _run_chunk(stepper, carry, jnp.asarray(chunk), schedule.uniform)
            pieces.append(new_rows)
            bar.update(int(chunk.sum()))
            if checkpoint is not None and start + size < n:
                partial = jax.tree_util.tree_map(lambda *a: np.concatenate(a), *jax.device_get(pieces))
                _trajectory(problem, stepper, carry, partial, schedule, done + start + len(chunk), info).save(checkpoint)
    rows = _concat(pieces)
    traj = _trajectory(problem, stepper, carry, rows, schedule, len(schedule.steps), info)
    if checkpoint is not None:
        traj.save(checkpoint)
    return traj


def _lr(lr, dtype, name: str = "lr"):
    if np.ndim(lr) != 0:
        raise ValueError(f"{name} has shape {np.shape(lr)}; expected a number (gd and sgd also take a 1-D array).")
    v.check_positive(name, lr)
    return jnp.asarray(lr, dtype)


def _batched_over_lr(fn, lr, resume=None, checkpoint=None, progress=False, **kw):
    """Run `fn` for each entry of a 1-D array of learning rates with one vmapped call."""
    v.check_positive("lr", lr)  # concrete here; inside the vmap the rates are tracers
    if resume is not None or checkpoint is not None or progress:
        raise ValueError("resume=, checkpoint= and progress= take one learning rate, not a batch "
                         f"(lr has shape {np.shape(lr)}); run the rates one at a time for those.")
    lrs = jnp.asarray(lr)
    rows = {}

    def one(l):
        # The saved steps are numpy, the same for every rate: set them after the vmap rather
        # than let it broadcast them eagerly (a compiled kernel each).
        traj = fn(l, **kw)
        rows["t"], rows["steps"] = traj.t, traj.steps
        return dataclasses.replace(traj, t=None, steps=None)

    traj = jax.vmap(one)(lrs)
    K = lrs.shape[0]
    t, steps = (np.broadcast_to(rows[k], (K,) + np.shape(rows[k])).copy() for k in ("t", "steps"))
    info = dict(traj.info)
    info["lr"] = tuple(float(x) for x in np.asarray(lrs)) if v.is_concrete(lrs) else "batched"
    return dataclasses.replace(traj, t=t, steps=steps, info=tuple(info.items()))


def _lr_info(lr):
    return float(lr) if v.is_concrete(lr) else "traced"


# ------------------------------------------------------------------------ gd
def gd(
    problem: Problem,
    lr: float | Float[ArrayLike, ""] | Float[ArrayLike, " K"],
    steps: int,
    *,
    save_every: int = 1,
    save_steps: Optional[Sequence[int]] = None,
    save_scores: bool = False,
    resume: Optional[Trajectory] = None,
    checkpoint: Optional[str | os.PathLike] = None,
    progress: bool = False,
) -> Trajectory:
    """Full-batch gradient descent in score space.

    S <- S - lr * G_E diag(p) (softmax(S) - Y) G_U, exactly GD on W mapped to the scores.

    **Arguments:**

    - `problem`: the [`Problem`][].
    - `lr`: the step size eta > 0; a 1-D array runs every rate in one vmapped call and
      returns a batched Trajectory (index it, `traj[k]`, for one rate; `resume`,
      `checkpoint` and `progress` take a single rate).
    - `steps`: number of GD steps.
    - `save_every`: save a row every this many steps (must divide `steps`). Row k is step
      k * save_every, from step 0 (the start) to `steps`.
    - `save_steps`: instead, the exact steps to save (e.g. [`log_steps`][]); from 0 to `steps`.
    - `save_scores`: also save S at every row (T x N x M memory).
    - `resume`: a Trajectory of an earlier, shorter or interrupted run with the same problem,
      rate and save schedule (e.g. `Trajectory.load(checkpoint)`); the run continues from its
      last row to `steps`, and the result equals the uninterrupted run bit for bit.
    - `checkpoint`: a path; the trajectory so far is written there (atomically) after each of
      ~50 chunks, and at the end.
    - `progress`: show a progress bar on stderr (the run is then split into ~50 chunks).

    **Returns:** a [`Trajectory`][] with rows at the saved steps.

    Traced arguments (under `jit`/`vmap`) are not range-checked.
    """
    schedule = _schedule(steps, save_every, save_steps)
    if np.ndim(lr) == 1:
        return _batched_over_lr(
            lambda l, **kw: gd(problem, l, steps, **kw), lr, resume=resume, checkpoint=checkpoint,
            progress=progress, save_every=save_every, save_steps=save_steps, save_scores=save_scores,
        )
    lr = _lr(lr, problem.dtype)
    stepper = _GD(problem, lr, save_scores)
    info = dict(integrator="gd", lr=_lr_info(lr), structure=_structure_info(problem), dtype=str(problem.dtype))
    return _run(problem, stepper, problem.S0, schedule, info, resume=resume, progress=progress,
                checkpoint=checkpoint, desc="gd")


def _structure_info(problem: Problem) -> str:
    return f"E={problem.structure_E}, U={problem.structure_U}"


class _ScoreStepper(_Stepper):
    problem: Problem
    lr: Array
    save_scores: bool = eqx.field(static=True)

    def observe(self, S):
        return _record(self.problem, S, self.save_scores)

    def scores(self, S):
        return S


class _GD(_ScoreStepper):
    def advance(self, S, k):
        P = self.problem
        return S - self.lr * P.direction(P.p[:, None] * obs.residual(S, P.Y))


# ----------------------------------------------------------------------- sgd
def sgd(
    problem: Problem,
    lr: float | Float[ArrayLike, ""],
    steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    *,
    save_every: int = 1,
    save_steps: Optional[Sequence[int]] = None,
    save_scores: bool = False,
    resume: Optional[Trajectory] = None,
    checkpoint: Optional[str | os.PathLike] = None,
    progress: bool = False,
) -> Trajectory:
    """Minibatch SGD in score space.

    Step k draws `batch_size` inputs x ~ p with replacement (key `fold_in(key, k)`) and
    descends the batch-mean cross-entropy: S <- S - lr * G_E diag(c/B) (softmax(S) - Y) G_U,
    with c the counts of each input in the batch. Saved rows hold population quantities.

    **Arguments:** as [`gd`][], plus `batch_size` (B >= 1) and `key` (a JAX PRNG key).
    A resumed run draws the same batches as the uninterrupted one.

    **Returns:** a [`Trajectory`][].
    """
    schedule = _schedule(steps, save_every, save_steps)
    batch_size = v.check_count("batch_size", batch_size, 1)
    if np.ndim(lr) == 1:
        return _batched_over_lr(
            lambda l, **kw: sgd(problem, l, steps, batch_size, key, **kw), lr, resume=resume,
            checkpoint=checkpoint, progress=progress, save_every=save_every, save_steps=save_steps,
            save_scores=save_scores,
        )
    lr = _lr(lr, problem.dtype)
    key = jnp.asarray(key)
    stepper = _SGD(problem, lr, save_scores, key, batch_size)
    seed = tuple(np.asarray(jax.random.key_data(key)).ravel().tolist()) if v.is_concrete(key) else "traced"
    info = dict(integrator="sgd", lr=_lr_info(lr), batch_size=batch_size, seed=seed,
                structure=_structure_info(problem), dtype=str(problem.dtype))
    return _run(problem, stepper, problem.S0, schedule, info, resume=resume, progress=progress,
                checkpoint=checkpoint, desc="sgd")


class _SGD(_ScoreStepper):
    key: Array
    batch_size: int = eqx.field(static=True)

    def advance(self, S, k):
        P = self.problem
        logits = jnp.log(P.p)  # log 0 = -inf: never drawn
        idx = jax.random.categorical(jax.random.fold_in(self.key, k), logits, shape=(self.batch_size,))
        weight = jnp.zeros(P.N, P.dtype).at[idx].add(1.0 / self.batch_size)
        return S - self.lr * P.direction(weight[:, None] * obs.residual(S, P.Y))


# ---------------------------------------------------------------- gd_weights
def weight_scores(problem: Problem, W: Float[Array, "d d"], layer_norm: bool = False) -> Float[Array, "N M"]:
    """S[x, y] = u_y^T W e_x; with `layer_norm`, W e_x is divided by its norm first."""
    H = problem.E @ W.T  # rows W e_x
    if layer_norm:
        H = H / jnp.linalg.norm(H, axis=-1, keepdims=True)
    return H @ problem.U.T


def weight_loss(W, problem: Problem, layer_norm: bool = False):
    """The population cross-entropy as a function of the weights W."""
    return obs.loss(weight_scores(problem, W, layer_norm), problem.p, problem.Y)


_OPTIMIZER_NAMES = ("adam", "gd", "momentum", "sgd", "sign")


def _optimizer(name: str) -> Callable:
    """The optax factory `lr -> GradientTransformation` for a name (optax is imported on use)."""
    import optax

    return {
        "gd": optax.sgd,
        "sgd": optax.sgd,
        "momentum": _momentum,
        "adam": optax.adam,
        "sign": optax.sign_sgd,
    }[name]


def _momentum(lr):
    import optax

    return optax.sgd(lr, momentum=0.9)


def gd_weights(
    problem: Problem,
    lr: float | Float[ArrayLike, ""],
    steps: int,
    *,
    W0: Optional[Float[ArrayLike, "d d"]] = None,
    optimizer: Optional[str | Callable] = None,
    layer_norm: bool = False,
    save_every: int = 1,
    save_steps: Optional[Sequence[int]] = None,
    save_scores: bool = False,
    save_weights: bool = False,
    progress: bool = False,
) -> Trajectory:
    """Descent on the d x d weights W with `jax.grad` of the W-space loss.

    The reference that score-space [`gd`][] is tested against, and the path for what the
    score-space reduction does not cover: the layer-norm variant and other optimizers.

    **Arguments:**

    - `problem`: a [`Problem`][] with embeddings `E` and `U`.
    - `lr`, `steps`, `save_every`, `save_steps`, `save_scores`, `progress`: as in [`gd`][].
    - `W0`: initial weights (d, d); defaults to `problem.W0`, or zero.
    - `optimizer`: `None` for plain GD (W <- W - lr grad); a name among "gd", "momentum"
      (0.9), "adam", "sign"; or a callable `lr -> optax.GradientTransformation`.
    - `layer_norm`: divide W e_x by its norm before unembedding (the paper's variant).
    - `save_weights`: also save W at every row (T x d x d).

    **Returns:** a [`Trajectory`][]; `final_scores` are the scores of the final W.
    """
    if problem.E is None or problem.U is None:
        raise ValueError(
            "problem has no embeddings (E, U): gd_weights needs them; build it with "
            "Problem.from_embeddings (for an orthogonal problem, E = U = identity)."
        )
    schedule = _schedule(steps, save_every, save_steps)
    d = problem.E.shape[1]
    if isinstance(optimizer, str) and optimizer not in _OPTIMIZER_NAMES:
        v.fail("optimizer", optimizer, f"use one of {list(_OPTIMIZER_NAMES)} or a callable lr -> optax transformation")
    if optimizer is not None and not isinstance(optimizer, str) and not callable(optimizer):
        v.fail("optimizer", str(optimizer), "use a name or a callable lr -> optax transformation")
    lr = _lr(lr, problem.dtype)
    if W0 is None:
        W0 = problem.W0 if problem.W0 is not None else jnp.zeros((d, d), problem.dtype)
        if problem.W0 is None and v.is_concrete(problem.S0) and np.any(np.asarray(problem.S0) != 0):
            raise ValueError("problem.S0 is non-zero but problem.W0 is unknown: pass W0= explicitly.")
    else:
        v.check_shape("W0", W0, (d, d))
        v.check_finite("W0", W0)
    W0 = jnp.asarray(W0, problem.dtype)
    if layer_norm and v.is_concrete(W0) and not np.any(np.asarray(W0)):
        raise ValueError("layer_norm=True needs a non-zero W0 (W e_x / |W e_x| is 0/0 at W = 0): pass W0=.")
    make = None if optimizer is None else (_optimizer(optimizer) if isinstance(optimizer, str) else optimizer)
    stepper = _Weights(problem, lr, save_scores, make, layer_norm, save_weights)
    state0 = W0 if make is None else (W0, make(lr).init(W0))
    name = "gd" if optimizer is None else (optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", "custom"))
    info = dict(integrator="gd_weights", lr=_lr_info(lr), optimizer=name, layer_norm=layer_norm,
                dtype=str(problem.dtype))
    return _run(problem, stepper, state0, schedule, info, progress=progress, desc="gd_weights")


class _Weights(_ScoreStepper):
    # The optimizer factory is static and built inside the trace, so that a new `lr` reuses
    # the compiled loop (an optax transformation closes over its rate).
    make: Optional[Callable] = eqx.field(static=True)
    layer_norm: bool = eqx.field(static=True)
    save_weights: bool = eqx.field(static=True)

    def weights(self, state):
        return state if self.make is None else state[0]

    def advance(self, state, k):
        grad = jax.grad(weight_loss)
        if self.make is None:
            return state - self.lr * grad(state, self.problem, self.layer_norm)
        W, opt_state = state
        updates, opt_state = self.make(self.lr).update(grad(W, self.problem, self.layer_norm), opt_state, W)
        return W + updates, opt_state  # optax.apply_updates for a single array

    def scores(self, state):
        return weight_scores(self.problem, self.weights(state), self.layer_norm)

    def finite(self, state):
        # Finite weights can still give infinite scores (u^T W e overflows).
        return _finite(state) & jnp.all(jnp.isfinite(self.scores(state)))

    def observe(self, state):
        row = _record(self.problem, self.scores(state), self.save_scores)
        if self.save_weights:
            row["W"] = self.weights(state)
        return row
