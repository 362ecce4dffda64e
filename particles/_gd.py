"""Full-batch GD and minibatch SGD in score space: steppers of the one dynamics, one driver.

Each run is one compiled `lax.scan` (see `_driver`). Hyper-parameters are arrays, so a new
rate never recompiles, and a 1-D array of rates runs as one vmapped batch over the same
compiled core ([`over_rates`][]).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from . import _driver, _dynamics
from . import _observables as obs
from . import _validate as v
from ._problem import Problem
from ._schedule import Schedule
from ._status import Status
from ._trajectory import Trajectory, meta_json


# ----------------------------------------------------------------- steppers
def observe(problem: Problem, S, save_scores: bool) -> dict:
    """The row saved at scores S: loss, 0-1 loss, accuracy, margins (and S)."""
    row = dict(
        loss=obs.loss(S, problem.p, problem.Y),
        zero_one=obs.zero_one(S, problem.p, problem.Y),
        accuracy=obs.accuracy(S, problem.p, problem.Y),
        margins=obs.margins(S, problem.Y),
    )
    if save_scores:
        row["scores"] = S
    return row


class ScoreStepper(_driver.Stepper):
    problem: Problem
    lr: Array
    save_scores: bool = eqx.field(static=True)

    def observe(self, S):
        return observe(self.problem, S, self.save_scores)

    def scores(self, S):
        return S


class GD(ScoreStepper):
    weight_decay: Optional[Array] = None  # None: no decay (not a multiplication by 0 per step)

    def advance(self, S, k):
        return _dynamics.gd_step(self.problem, S, self.lr, weight_decay=_decay(self.weight_decay))


class SGD(ScoreStepper):
    key: Array
    batch_size: int = eqx.field(static=True)
    weight_decay: Optional[Array] = None

    def advance(self, S, k):
        # Batch k depends on (key, k) only: a resumed run draws the batches it would have.
        w = _dynamics.minibatch_weights(jax.random.fold_in(self.key, k), self.problem.p, self.batch_size)
        return _dynamics.gd_step(self.problem, S, self.lr, w, weight_decay=_decay(self.weight_decay))


def _decay(weight_decay):
    return 0.0 if weight_decay is None else weight_decay


def decay(weight_decay, dtype):
    """A weight decay as an array (None for 0: the step then has no decay term at all)."""
    if isinstance(weight_decay, (int, float)) and not isinstance(weight_decay, bool) and weight_decay == 0:
        return None
    if np.ndim(weight_decay) != 0:
        raise ValueError(f"weight_decay has shape {np.shape(weight_decay)}; expected a number >= 0.")
    if v.is_concrete(weight_decay) and not (np.isfinite(weight_decay) and weight_decay >= 0):
        v.fail("weight_decay", weight_decay, "a finite number >= 0")
    return jnp.asarray(weight_decay, dtype)


# ------------------------------------------------------------- the runner
def run(problem: Problem, stepper: _driver.Stepper, state0, schedule: Schedule, info: dict, settings: dict, *,
        resume: Optional[Trajectory] = None, checkpoint=None, progress: bool = False) -> Trajectory:
    """Run `stepper` through `schedule` (from `resume` when given) and build the Trajectory.

    With a progress bar or a checkpoint the run is cut into chunks of rows (one
    compilation); after each chunk the trajectory so far is written to `checkpoint`.
    `settings` is what a resumed run must share with this one.
    """
    info = dict(info, settings=settings)
    if resume is None and not progress and checkpoint is None:
        carry, rows, final = _driver.run_whole(stepper, state0, schedule.gaps, schedule.uniform)
        return _trajectory(problem, schedule, schedule.rows, rows, final, carry[2], info)
    if resume is None:
        carry, first, done = _driver.start(state0), _driver.observe_start(stepper, state0), 1
    else:
        carry, first, done = _resume(problem, stepper, state0, schedule, resume, settings)
    size = _driver.chunk_size(schedule.rows - done, cut=progress or checkpoint is not None)
    bounds = [(i, min(i + size, schedule.rows - 1)) for i in range(done - 1, schedule.rows - 1, size)]
    chunks = [schedule.gaps[a:b] for a, b in bounds]

    def advance(carry, gaps):
        return _driver.run_chunk(stepper, carry, jnp.asarray(gaps), schedule.uniform)

    def save_partial(carry, pieces, n_chunks):
        rows = _driver.join([first] + list(jax.device_get(pieces)))
        n = len(rows["loss"])
        _trajectory(problem, schedule, n, rows, stepper.scores(carry[0]), carry[2], info).save(checkpoint)

    carry, pieces = _driver.drive(advance, carry, chunks, sizes=[int(c.sum()) for c in chunks],
                                  on_chunk=None if checkpoint is None else save_partial, progress=progress,
                                  desc=info["integrator"], unit="step")
    rows = _driver.join([first] + list(jax.device_get(pieces)))
    traj = _trajectory(problem, schedule, schedule.rows, rows, stepper.scores(carry[0]), carry[2], info)
    if checkpoint is not None:
        traj.save(checkpoint)
    return traj


def _trajectory(problem, schedule, n_rows, rows, final, bad, info) -> Trajectory:
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
        final_scores=final,
        status=jnp.where(bad >= 0, Status.NON_FINITE, Status.OK),
        first_bad_step=bad,
        info=meta_json(info),
    )


def _resume(problem, stepper, state0, schedule, resume: Trajectory, settings):
    if resume.steps is None or resume.batch_shape:
        raise ValueError("resume= takes an unbatched Trajectory of a discrete run (not flow, not a batch).")
    if not resume.ok:
        raise ValueError(f"resume= comes from a failed run ({resume.message}); it cannot be continued.")
    done = _driver.resume_point(resume.metadata, settings, resume.steps, schedule.steps)
    v.check_shape("resume.final_scores", resume.final_scores, (problem.N, problem.M))
    rows = {k: getattr(resume, k) for k in ("loss", "zero_one", "accuracy", "margins", "scores", "W")
            if getattr(resume, k) is not None}
    if set(rows) != set(jax.eval_shape(stepper.observe, state0)):
        raise ValueError(f"resume= saved {sorted(rows)}; this run saves others: use the same save_scores.")
    state = jnp.asarray(resume.final_scores, problem.dtype)
    step = jnp.asarray(int(np.asarray(resume.steps)[-1]), _driver.int_dtype())
    return (state, step, jnp.asarray(-1, _driver.int_dtype())), jax.tree_util.tree_map(np.asarray, rows), done


# ------------------------------------------------------ batching over rates
def rate(lr, dtype):
    """A single learning rate as an array (range-checked when concrete)."""
    if np.ndim(lr) != 0:
        raise ValueError(f"lr has shape {np.shape(lr)}; expected a number (gd and sgd also take a 1-D array).")
    v.check_positive("lr", lr)
    return jnp.asarray(lr, dtype)


def rate_info(lr):
    """The rate as metadata: a float, a list for a batch, None when traced (under jit/vmap)."""
    if not v.is_concrete(lr):
        return None
    a = np.asarray(lr, np.float64)
    return float(a) if a.ndim == 0 else a.tolist()


@eqx.filter_jit
def _run_rates(stepper, lrs, state0, gaps, uniform: Optional[int]):
    def one(lr):
        return _driver.run_whole(eqx.tree_at(lambda s: s.lr, stepper, lr), state0, gaps, uniform)

    return jax.vmap(one)(lrs)


def over_rates(problem: Problem, stepper, lrs, schedule: Schedule, info: dict, settings: dict, *,
               resume=None, checkpoint=None, progress=False) -> Trajectory:
    """Run `stepper` for each rate of the 1-D array `lrs` in one vmapped call (one compilation).

    The batch shares everything but the rate (an SGD batch shares its minibatches).
    """
    v.check_positive("lr", lrs)
    if resume is not None or checkpoint is not None or progress:
        raise ValueError("resume=, checkpoint= and progress= take one learning rate, not a batch "
                         f"(lr has shape {np.shape(lrs)}); run the rates one at a time for those.")
    lrs = jnp.asarray(lrs, problem.dtype)
    carry, rows, final = _run_rates(stepper, lrs, problem.S0, schedule.gaps, schedule.uniform)
    traj = _trajectory(problem, schedule, schedule.rows, rows, final, carry[2],
                       dict(info, lr=rate_info(lrs), settings=settings))
    K = lrs.shape[0]
    # The saved steps are the same for every rate: numpy, broadcast after the call.
    steps = np.broadcast_to(traj.steps, (K,) + traj.steps.shape).copy()
    return eqx.tree_at(lambda t: (t.steps, t.t), traj, (steps, steps.astype(np.dtype(problem.dtype))))


def _structure(problem: Problem) -> str:
    return f"E={problem.structure_E}, U={problem.structure_U}"


# ------------------------------------------------------------------ public
def gd(
    problem: Problem,
    lr: float | Float[ArrayLike, ""] | Float[ArrayLike, " K"],
    steps: int,
    *,
    save_every: int = 1,
    save_steps: Optional[Sequence[int]] = None,
    save_scores: bool = False,
    weight_decay: float | Float[ArrayLike, ""] = 0.0,
    resume: Optional[Trajectory] = None,
    checkpoint: Optional[str | os.PathLike] = None,
    progress: bool = False,
) -> Trajectory:
    """Full-batch gradient descent in score space.

    S ← S − lr · G_E diag(p) (softmax(S) − Y) G_U, exactly GD on W mapped to the scores
    (one step of the one dynamics, `particles._dynamics.gd_step`).

    **Arguments:**

    - `problem`: the [`Problem`][].
    - `lr`: the step size η > 0; a 1-D array runs every rate in one vmapped call and
      returns a batched Trajectory (index it, `traj[k]`, for one rate; `resume`,
      `checkpoint` and `progress` take a single rate).
    - `steps`: number of GD steps.
    - `save_every`: save a row every this many steps (must divide `steps`). Row k is step
      k · save_every, from step 0 (the start) to `steps`.
    - `save_steps`: instead, the exact steps to save (e.g. [`log_steps`][]); from 0 to `steps`.
    - `save_scores`: also save S at every row (T × N × M memory).
    - `weight_decay`: λ ≥ 0 for GD on W with decay, W ← W − lr (∇L + λ W) (torch's SGD):
      the scores from W shrink by lr λ each step (`problem.offset`, the scores that do not
      come from W, stay). An array: a new value does not recompile.
    - `resume`: a Trajectory of an earlier, shorter or interrupted run with the same problem,
      rate and save schedule (e.g. `Trajectory.load(checkpoint)`); the run continues from its
      last row to `steps`, and the result equals the uninterrupted run bit for bit.
    - `checkpoint`: a path; the trajectory so far is written there (atomically) after each of
      ~50 chunks, and at the end.
    - `progress`: show a progress bar on stderr (the run is then cut into ~50 chunks).

    **Returns:** a [`Trajectory`][] with rows at the saved steps.

    Traced arguments (under `jit`/`vmap`) are not range-checked.

    >>> import particles as pt
    >>> traj = pt.gd(pt.two_particles(corr=0.9, p1=0.75), lr=1.0, steps=1000, save_every=10)
    >>> [round(m, 4) for m in traj.margins[1].tolist()]  # step 10: the rare token is forgotten
    [1.3367, -0.591]
    """
    schedule = Schedule.of(steps, save_every, save_steps)
    wd = decay(weight_decay, problem.dtype)
    info = dict(integrator="gd", lr=rate_info(lr), structure=_structure(problem), dtype=str(problem.dtype))
    if wd is not None:
        info["weight_decay"] = rate_info(wd)
    settings = dict(integrator="gd", lr=info["lr"], save_scores=bool(save_scores), weight_decay=info.get("weight_decay"))
    if np.ndim(lr) == 1:
        return over_rates(problem, GD(problem, jnp.asarray(0.0, problem.dtype), save_scores, wd), lr, schedule, info,
                          settings, resume=resume, checkpoint=checkpoint, progress=progress)
    stepper = GD(problem, rate(lr, problem.dtype), save_scores, wd)
    return run(problem, stepper, problem.S0, schedule, info, settings, resume=resume, checkpoint=checkpoint,
               progress=progress)


def sgd(
    problem: Problem,
    lr: float | Float[ArrayLike, ""] | Float[ArrayLike, " K"],
    steps: int,
    batch_size: int,
    key: PRNGKeyArray | int,
    *,
    save_every: int = 1,
    save_steps: Optional[Sequence[int]] = None,
    save_scores: bool = False,
    weight_decay: float | Float[ArrayLike, ""] = 0.0,
    resume: Optional[Trajectory] = None,
    checkpoint: Optional[str | os.PathLike] = None,
    progress: bool = False,
) -> Trajectory:
    """Minibatch SGD in score space.

    Step k draws `batch_size` inputs x ~ p with replacement (key `fold_in(key, k)`) and
    descends the batch-mean cross-entropy: S ← S − lr · G_E diag(c/B) (softmax(S) − Y) G_U,
    with c the counts of each input in the batch. Saved rows hold population quantities.

    **Arguments:** as [`gd`][] (`weight_decay` included), plus `batch_size` (B ≥ 1) and `key`
    (a JAX PRNG key, or an integer seed). A resumed run draws the same batches as the uninterrupted one.

    **Returns:** a [`Trajectory`][]; its metadata records the seed.

    >>> import particles as pt
    >>> traj = pt.sgd(pt.orthogonal(pt.zipf(4, 1.0)), lr=1.0, steps=100, batch_size=8, key=0)
    >>> traj.metadata["seed"], traj.ok
    (0, True)
    """
    schedule = Schedule.of(steps, save_every, save_steps)
    batch_size = v.check_count("batch_size", batch_size, 1)
    seed = v.seed_of(key)
    key = v.prng_key("key", key)
    wd = decay(weight_decay, problem.dtype)
    info = dict(integrator="sgd", lr=rate_info(lr), batch_size=batch_size, seed=seed, structure=_structure(problem),
                dtype=str(problem.dtype))
    if wd is not None:
        info["weight_decay"] = rate_info(wd)
    settings = dict(integrator="sgd", lr=info["lr"], batch_size=batch_size, seed=seed, save_scores=bool(save_scores),
                    weight_decay=info.get("weight_decay"))
    if np.ndim(lr) == 1:
        stepper = SGD(problem, jnp.asarray(0.0, problem.dtype), save_scores, key, batch_size, wd)
        return over_rates(problem, stepper, lr, schedule, info, settings, resume=resume, checkpoint=checkpoint,
                          progress=progress)
    stepper = SGD(problem, rate(lr, problem.dtype), save_scores, key, batch_size, wd)
    return run(problem, stepper, problem.S0, schedule, info, settings, resume=resume, checkpoint=checkpoint,
               progress=progress)
