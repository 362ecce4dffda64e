"""Descent on the weights W themselves, with `jax.grad`: the reference the score-space
reduction is tested against, and the path for what it does not cover (layer norm, optax
optimizers)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from . import _gd
from . import _observables as obs
from . import _validate as v
from ._problem import Problem
from ._schedule import Schedule
from ._trajectory import Trajectory

MOMENTUM = 0.9
"""The momentum of the optimizer named "momentum" (optax.sgd's heavy ball)."""


def weight_scores(problem: Problem, W: Float[Array, "d d"], layer_norm: bool = False) -> Float[Array, "N M"]:
    """S[x, y] = u_yᵀ W e_x; with `layer_norm`, W e_x is divided by its norm first.

    >>> import jax.numpy as jnp, particles as pt
    >>> problem = pt.two_particles(corr=0.0, p1=0.5)
    >>> weight_scores(problem, jnp.eye(2)).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    H = problem.E @ W.T  # rows W e_x
    if layer_norm:
        H = H / jnp.linalg.norm(H, axis=-1, keepdims=True)
    return H @ problem.U.T


def weight_loss(W: Float[Array, "d d"], problem: Problem, layer_norm: bool = False) -> Float[Array, ""]:
    """The population cross-entropy as a function of the weights W (what `jax.grad` differentiates)."""
    return obs.loss(weight_scores(problem, W, layer_norm), problem.p, problem.Y)


def _momentum(lr):
    import optax

    return optax.sgd(lr, momentum=MOMENTUM)


def _optimizer(name: str) -> Callable:
    """The optax factory `lr -> GradientTransformation` of a name (optax is imported on use)."""
    import optax

    return {"gd": optax.sgd, "sgd": optax.sgd, "momentum": _momentum, "adam": optax.adam, "sign": optax.sign_sgd}[name]


OPTIMIZERS = ("adam", "gd", "momentum", "sgd", "sign")
"""The optimizer names `gd_weights` knows (a callable `lr -> optax transformation` also works)."""


class WeightStepper(_gd.ScoreStepper):
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
        # Finite weights can still give infinite scores (uᵀ W e overflows).
        return super().finite(state) & jnp.all(jnp.isfinite(self.scores(state)))

    def observe(self, state):
        row = _gd.observe(self.problem, self.scores(state), self.save_scores)
        if self.save_weights:
            row["W"] = self.weights(state)
        return row


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
    """Descent on the d × d weights W with `jax.grad` of the W-space loss.

    **Arguments:**

    - `problem`: a [`Problem`][] with embeddings `E` and `U`.
    - `lr`, `steps`, `save_every`, `save_steps`, `save_scores`, `progress`: as in [`gd`][].
    - `W0`: initial weights (d, d); defaults to `problem.W0`, or zero.
    - `optimizer`: `None` for plain GD (W ← W − lr ∇L); a name among `OPTIMIZERS` ("gd",
      "momentum" (0.9), "adam", "sign"); or a callable `lr -> optax.GradientTransformation`.
    - `layer_norm`: divide W e_x by its norm before unembedding (the paper's variant).
    - `save_weights`: also save W at every row (T × d × d).

    **Returns:** a [`Trajectory`][]; `final_scores` are the scores of the final W.

    >>> import particles as pt
    >>> problem = pt.two_particles(corr=0.9, p1=0.75)
    >>> a = pt.gd_weights(problem, 1.0, 20)
    >>> b = pt.gd(problem, 1.0, 20)
    >>> float(abs(a.margins - b.margins).max()) < 1e-13  # the reduction to scores is exact
    True
    """
    if problem.E is None or problem.U is None:
        raise ValueError(
            "problem has no embeddings (E, U): gd_weights needs them; build it with "
            "Problem.from_embeddings (for an orthogonal problem, E = U = identity)."
        )
    schedule = Schedule.of(steps, save_every, save_steps)
    d = problem.E.shape[1]
    if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
        v.fail("optimizer", optimizer, f"use one of {list(OPTIMIZERS)} or a callable lr -> optax transformation")
    if optimizer is not None and not isinstance(optimizer, str) and not callable(optimizer):
        v.fail("optimizer", str(optimizer), "use a name or a callable lr -> optax transformation")
    lr = _gd.rate(lr, problem.dtype)
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
    stepper = WeightStepper(problem, lr, save_scores, make, layer_norm, save_weights)
    state0 = W0 if make is None else (W0, make(lr).init(W0))
    name = "gd" if optimizer is None else (optimizer if isinstance(optimizer, str)
                                          else getattr(optimizer, "__name__", "custom"))
    info = dict(integrator="gd_weights", lr=_gd.rate_info(lr), optimizer=name, layer_norm=layer_norm,
                dtype=str(problem.dtype))
    settings = dict(info, save_scores=bool(save_scores), save_weights=bool(save_weights))
    return _gd.run(problem, stepper, state0, schedule, info, settings, progress=progress)
