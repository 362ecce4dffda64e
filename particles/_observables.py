"""Observables of a score matrix S (N x M): loss, margins, 0-1 loss, accuracy.

All are pure JAX, work on any leading batch shape of S ... x N x M, and are stable for
scores of any size (log-sum-exp; no exp of a raw score). Each is jitted: called eagerly (on a
saved trajectory, in analysis) it compiles once per shape instead of once per operation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


@jax.jit
def residual(S: Float[Array, "N M"], Y: Float[Array, "N M"]) -> Float[Array, "N M"]:
    """softmax(S) - Y: minus the force on each particle, before weighting by p.

    At large margins softmax(S)[f*(x)] - 1 cancels catastrophically (1 - 1e-12 has four
    correct digits), so the target entry is computed as minus the sum of the others (each
    row of the residual sums to zero); every entry then has full relative precision.
    """
    R = jax.nn.softmax(S, axis=-1) - Y
    target = jnp.broadcast_to(jax.nn.one_hot(jnp.argmax(Y, axis=-1), Y.shape[-1], dtype=bool), R.shape)
    others = jnp.sum(jnp.where(target, 0.0, R), axis=-1, keepdims=True)
    return jnp.where(target, -others, R)


@jax.jit
def losses(S: Float[Array, "*B N M"], Y: Float[Array, "N M"]) -> Float[Array, "*B N"]:
    """Per-input cross-entropy -sum_y q(y|x) log softmax(S[x])_y, shape (..., N)."""
    logp = jax.nn.log_softmax(S, axis=-1)
    Y = jnp.broadcast_to(Y, logp.shape)
    # Where q(y|x) = 0 the term is 0 even if log p = -inf (exp underflow at huge margins).
    return -jnp.sum(jnp.where(Y > 0, Y * logp, 0.0), axis=-1)


@jax.jit
def loss(S: Float[Array, "*B N M"], p: Float[Array, " N"], Y: Float[Array, "N M"]) -> Float[Array, "*B"]:
    """Population cross-entropy L = sum_x p(x) CE(S[x], q(.|x)).

    **Arguments:**

    - `S`: scores, shape (..., N, M).
    - `p`: frequencies, shape (N,).
    - `Y`: one-hot targets or rows of q(y|x), shape (N, M).

    **Returns:** the loss, shape (...). Equals log M at S = 0 with one-hot targets.
    """
    return losses(S, Y) @ p


@jax.jit
def margins(S: Float[Array, "*B N M"], Y: Float[Array, "N M"]) -> Float[Array, "*B N"]:
    """m(x) = S[x, f*(x)] - max_{y != f*(x)} S[x, y], shape (..., N).

    f*(x) is argmax_y Y[x, y]. With M = 1 there is no competitor and the margin is +inf.
    """
    target = jnp.argmax(Y, axis=-1)
    mask = jnp.broadcast_to(jax.nn.one_hot(target, Y.shape[-1], dtype=bool), S.shape)
    correct = jnp.sum(jnp.where(mask, S, 0.0), axis=-1)
    best_other = jnp.max(jnp.where(mask, -jnp.inf, S), axis=-1)
    return correct - best_other


@jax.jit
def correct(S: Float[Array, "*B N M"], Y: Float[Array, "N M"]) -> Array:
    """1{argmax_y S[x, y] = f*(x)}, ties to the first index (as `argmax`), shape (..., N)."""
    return jnp.argmax(S, axis=-1) == jnp.broadcast_to(jnp.argmax(Y, axis=-1), S.shape[:-1])


@jax.jit
def accuracy(S: Float[Array, "*B N M"], p: Float[Array, " N"], Y: Float[Array, "N M"]) -> Float[Array, "*B"]:
    """sum_x p(x) 1{argmax_y S[x, y] = f*(x)}; ties go to the first index, as in the paper's code."""
    return correct(S, Y).astype(p.dtype) @ p


@jax.jit
def zero_one(S: Float[Array, "*B N M"], p: Float[Array, " N"], Y: Float[Array, "N M"]) -> Float[Array, "*B"]:
    """The 0-1 loss sum_x p(x) 1{argmax_y S[x, y] != f*(x)} = 1 - accuracy."""
    return (~correct(S, Y)).astype(p.dtype) @ p
