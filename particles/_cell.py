"""One run of a sweep: the events and the end of a GD (or SGD) run, without its trajectory.

The cell behind `particles.sweep` and [`hitting_time`][]: the step of the one dynamics
(`_dynamics.gd_step`) and the reducer of `particles.events`, on every step, in one
`lax.scan`. A sweep vmaps it over a chunk of grid points.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from . import _driver, _dynamics, _events
from . import _observables as obs
from . import _validate as v
from ._status import Status

METRICS = ("first_full_accuracy", "full_accuracy_from", "loss_increases", "loss_spikes", "max_spike",
           "final_loss", "final_min_margin", "margin_oscillations", "sign_flips", "status", "first_bad_step")
"""What a sweep records per cell (the events follow the conventions of `particles.events`).

- `first_full_accuracy`, `full_accuracy_from`: steps (0 = the start), −1 = never.
- `loss_increases`, `loss_spikes`: counts of increases and of runs of increases beyond
  float resolution; `max_spike`: max_k (L_k − min_{j≤k} L_j).
- `final_loss`, `final_min_margin` (over inputs with p > 0): after the last step, NaN for a
  non-finite cell.
- `margin_oscillations`, `sign_flips`: summed over tokens.
- `status` ([`Status`][]) and `first_bad_step` (−1 when finite throughout).
"""

INTEGER_METRICS = ("first_full_accuracy", "full_accuracy_from", "loss_increases", "loss_spikes",
                   "margin_oscillations", "sign_flips", "status", "first_bad_step")
INIT_KEY, PROBLEM_KEY = 2**32 - 1, 2**32 - 2
"""With a cell's key `key(seed)`: batch k is `fold_in(key, k)` (as `particles.sgd(..., key=seed)`
draws it), the random initial scores `fold_in(key, INIT_KEY)`, random embeddings
`fold_in(key, PROBLEM_KEY)`."""

# ---------------------------------------------------------------- the cell
def _row(problem, S, step):
    return _events.row(step, obs.loss(S, problem.p, problem.Y), obs.margins(S, problem.Y),
                       obs.full_accuracy(S, problem.p, problem.Y))


def run_cell(problem, lr, steps: int, key, *, batch_size=None, init_std=0.0, tol=None) -> dict:
    """The events and end of one run of `steps` GD steps (SGD with `batch_size`), all [`METRICS`][].

    The one cell behind sweeps and [`hitting_time`][]: the step of the one dynamics, the
    reducer of `particles.events` on every step. SGD draws batch k from `fold_in(key, k)`,
    as [`sgd`][] does; the random initial scores come from `fold_in(key, INIT_KEY)`. A
    non-finite state is frozen at its last finite value (the other cells of a batch carry on).
    """
    tol = _events.Tolerances.for_run("gd", problem.dtype) if tol is None else tol
    S0 = problem.S0
    if init_std:
        S0 = S0 + init_std * jax.random.normal(jax.random.fold_in(key, INIT_KEY), S0.shape, S0.dtype)
    c0 = _events.init(_row(problem, S0, jnp.asarray(0, _driver.int_dtype())), tol)

    def step(carry, k):
        S, c = carry
        # Batch k from fold_in(key, k), as `particles.sgd` draws it: same key, same batches.
        w = None if batch_size is None else _dynamics.minibatch_weights(jax.random.fold_in(key, k), problem.p,
                                                                        batch_size)
        new = _dynamics.gd_step(problem, S, lr, w)
        c = _events.update(c, _row(problem, new, k + 1), tol)
        return (jnp.where(c["first_bad"] < 0, new, S), c), None

    (S, c), _ = jax.lax.scan(step, (S0, c0), jnp.arange(steps, dtype=_driver.int_dtype()))
    out = _events.result(c)
    bad = out["first_bad_step"] >= 0
    nan = jnp.asarray(jnp.nan, problem.dtype)
    m = jnp.where(problem.p > 0, obs.margins(S, problem.Y), jnp.inf)
    return dict(
        first_full_accuracy=out["first_full_accuracy"],
        full_accuracy_from=out["full_accuracy_from"],
        loss_increases=out["loss_increases"],
        loss_spikes=out["loss_spikes"],
        max_spike=out["max_spike"],
        final_loss=jnp.where(bad, nan, obs.loss(S, problem.p, problem.Y)),
        final_min_margin=jnp.where(bad, nan, jnp.min(m)),
        margin_oscillations=jnp.sum(out["oscillations"]),
        sign_flips=jnp.sum(out["sign_flips"]),
        status=jnp.where(bad, Status.NON_FINITE, Status.OK),
        first_bad_step=out["first_bad_step"],
    )


def hitting_time(problem, lr, steps: int):
    """First GD step at which every input (with p > 0) is predicted right; −1 if none.

    The `first_full_accuracy` event of the sweep cell (0 when the start already is), for one
    problem; vmap it over a batch of problems, or use [`sweep`][] for a grid.

    **Arguments:** `problem` (a [`Problem`][]), `lr` (step size > 0, may be traced),
    `steps` (GD steps).

    **Returns:** an int scalar in {−1} ∪ [0, steps].

    >>> import particles as pt
    >>> int(pt.hitting_time(pt.two_particles(0.95, 0.75), 1.0, 100))
    52
    """
    steps = v.check_count("steps", steps, 1)
    v.check_positive("lr", lr)
    return _hitting(problem, jnp.asarray(lr, problem.dtype), steps)


@functools.partial(jax.jit, static_argnames=("steps",))
def _hitting(problem, lr, steps):
    return run_cell(problem, lr, steps, jax.random.key(0))["first_full_accuracy"]
