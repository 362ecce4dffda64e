"""Lean sweep kernels: the first GD step with full accuracy, for many runs in one call.

A sweep such as the paper's time-to-accuracy grid (10 x 10 x 10 two-particle runs x 1000
steps) needs one integer per run, not a trajectory. Saving every observable of every run
costs more than the dynamics at N = 2, so these kernels carry only the state and the
first hitting step through one `lax.scan`, vmapped (or broadcast) over the runs.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from . import _observables as obs
from . import _validate as v
from ._problem import Problem, default_dtype


def _int_dtype():
    return jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


@eqx.filter_jit
def _two_particle_kernel(corr, p1, lr, steps: int):
    # Runs are flattened to one axis (a 3-D batch ran 4x slower on CPU) and the four
    # coefficients hoisted out of the loop.
    shape = corr.shape
    corr, p1, lr = corr.ravel(), p1.ravel(), lr.ravel()
    p2 = 1 - p1
    a11, a12, a22, a21 = 2 * lr * p1, 2 * lr * corr * p2, 2 * lr * p2, 2 * lr * corr * p1
    zero = jnp.zeros_like(corr)

    def step(carry, k):
        m1, m2, first = carry
        # phi(m) = 1 - sigmoid(m) = P(wrong class); exp overflow to inf gives phi = 0.
        f1 = 1 / (1 + jnp.exp(m1))
        f2 = 1 / (1 + jnp.exp(m2))
        m1, m2 = m1 + (a11 * f1 - a12 * f2), m2 + (a22 * f2 - a21 * f1)
        # argmax ties go to index 0 = f*(1): token 1 is right at m1 = 0, token 2 is not at m2 = 0.
        hit = (m1 >= 0) & (m2 > 0) & (first < 0)
        return (m1, m2, jnp.where(hit, k, first)), None

    first0 = jnp.full(corr.shape, -1, _int_dtype())
    ks = jnp.arange(1, steps + 1, dtype=_int_dtype())
    (_, _, first), _ = jax.lax.scan(step, (zero, zero, first0), ks)
    return first.reshape(shape)


def two_particle_hitting_times(
    corr: Float[ArrayLike, "*B"],
    p1: Float[ArrayLike, "*B"],
    lr: Float[ArrayLike, "*B"],
    steps: int,
    *,
    dtype=None,
) -> Int[Array, "*B"]:
    """First GD step at which both tokens of [`two_particles`][] are predicted right.

    Runs the exact two-particle margin map from W0 = 0 (m1 = S[0,0] - S[0,1],
    m2 = S[1,1] - S[1,0], phi(m) = 1 / (1 + e^m)):

        m1 <- m1 + 2 lr (p1 phi(m1) - corr p2 phi(m2))
        m2 <- m2 + 2 lr (p2 phi(m2) - corr p1 phi(m1))

    for all runs at once (the arguments broadcast against each other). Accuracy follows
    `argmax` with ties to the first index, as [`accuracy`][]: token 1 counts as right at
    m1 = 0, token 2 does not at m2 = 0 (so corr = 1, where m2 = -m1 exactly, never hits).

    **Arguments:**

    - `corr`: <e_1, e_2> in [-1, 1], any shape.
    - `p1`: frequency of token 1 in [0, 1] (p2 = 1 - p1).
    - `lr`: step sizes > 0.
    - `steps`: number of GD steps per run.
    - `dtype`: float64 by default.

    **Returns:** int array of the broadcast shape: the first step k in 1..steps after
    which accuracy is 1, or -1 if it never is.
    """
    steps = v.check_count("steps", steps, 1)
    v.check_in_range("corr", corr, -1.0, 1.0)
    v.check_in_range("p1", p1, 0.0, 1.0)
    v.check_positive("lr", lr)
    dtype = default_dtype() if dtype is None else dtype
    corr, p1, lr = (jnp.asarray(a, dtype) for a in (corr, p1, lr))
    shape = jnp.broadcast_shapes(corr.shape, p1.shape, lr.shape)
    corr, p1, lr = (jnp.broadcast_to(a, shape) for a in (corr, p1, lr))
    return _two_particle_kernel(corr, p1, lr, steps)


@eqx.filter_jit
def _hitting_kernel(problem: Problem, lr, steps: int):
    def step(carry, k):
        S, first = carry
        S = S - lr * problem.direction(problem.p[:, None] * obs.residual(S, problem.Y))
        # Full accuracy: every token with p > 0 right (exact, unlike accuracy() == 1 in floats).
        full = jnp.all(obs.correct(S, problem.Y) | (problem.p == 0))
        return (S, jnp.where((first < 0) & full, k, first)), None

    ks = jnp.arange(1, steps + 1, dtype=_int_dtype())
    (_, first), _ = jax.lax.scan(step, (problem.S0, jnp.asarray(-1, _int_dtype())), ks)
    return first


def hitting_time(problem: Problem, lr: Float[ArrayLike, ""], steps: int) -> Int[Array, ""]:
    """First GD step after which every token (with p > 0) is predicted right; -1 if none.

    The same score-space step as [`gd`][], carrying only S and the answer. Vmap it over a
    batch of problems (e.g. `jax.vmap(lambda c, q, l: hitting_time(two_particles(c, q), l,
    steps))`) to sweep a grid in one compiled call.

    **Arguments:**

    - `problem`: the [`Problem`][].
    - `lr`: step size > 0 (scalar; may be traced).
    - `steps`: number of GD steps.

    **Returns:** an int scalar in {-1} ∪ [1, steps].
    """
    steps = v.check_count("steps", steps, 1)
    v.check_positive("lr", lr)
    return _hitting_kernel(problem, jnp.asarray(lr, problem.dtype), steps)


def paper_grid(num: int = 10) -> dict:
    """The axes of the paper's time-to-accuracy grid (paper-notes section 4.3), float64 numpy.

    p1 = sigmoid(logspace(-0.5, 0.5, num)), corr = linspace(0.5, 1, num),
    lr = logspace(-1, 1, num).
    """
    num = v.check_count("num", num, 1)
    x = np.logspace(-0.5, 0.5, num)
    return dict(p1=1 / (1 + np.exp(-x)), corr=np.linspace(0.5, 1.0, num), lr=np.logspace(-1, 1, num))
