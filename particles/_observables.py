"""Observables of a score matrix S (N x M): loss, margins, 0-1 loss, accuracy.

All are pure JAX, work on any leading batch shape of S ... x N x M, and are stable for
scores of any size (log-sum-exp; no exp of a raw score). Each is jitted: called eagerly (on a
saved trajectory, in analysis) it compiles once per shape instead of once per operation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


from ._dynamics import residual as residual  # the force lives with the dynamics


@jax.jit
def losses(S: Float[Array, "*B N M"], Y: Float[Array, "N M"]) -> Float[Array, "*B N"]:
    """Per-input cross-entropy −Σ_y q(y|x) log softmax(S[x])_y.

    **Arguments:** `S` scores (..., N, M); `Y` one-hot targets or q(y|x) (N, M).

    **Returns:** shape (..., N).

    Written as sum_y q(y|x) (S_top - S_y) + log1p(sum_{y != top} e^{S_y - S_top}) with
    S_top = max_y S[x, y]: every term is >= 0, so a loss of 1e-18 at margin 40 keeps full
    relative precision (log_softmax rounds it to 0: log(1 + 1e-18) = 0 in float64).
    """
    # The top entry by index (not jnp.max): its gradient must go to the excluded entry
    # alone, also at ties, for jax.grad of this form to be the softmax residual.
    a = jnp.argmax(S, axis=-1)
    top = jnp.take_along_axis(S, a[..., None], axis=-1)
    is_top = jax.nn.one_hot(a, S.shape[-1], dtype=bool)
    rest = jnp.sum(jnp.where(is_top, 0.0, jnp.exp(S - top)), axis=-1)
    Y = jnp.broadcast_to(Y, S.shape)
    # Where q(y|x) = 0 the term is 0 even if S_y = -inf.
    gap = jnp.sum(jnp.where(Y > 0, Y * (top - S), 0.0), axis=-1)
    return gap + jnp.log1p(rest)


@jax.jit
def loss(S: Float[Array, "*B N M"], p: Float[Array, " N"], Y: Float[Array, "N M"]) -> Float[Array, "*B"]:
    """Population cross-entropy L = sum_x p(x) CE(S[x], q(.|x)).

    **Arguments:**

    - `S`: scores, shape (..., N, M).
    - `p`: frequencies, shape (N,).
    - `Y`: one-hot targets or rows of q(y|x), shape (N, M).

    **Returns:** the loss, shape (...). Equals log M at S = 0 with one-hot targets.

    >>> import jax.numpy as jnp
    >>> float(loss(jnp.zeros((2, 3)), jnp.array([0.5, 0.5]), jnp.eye(3)[:2]))  # log 3
    1.0986122886681098
    >>> float(loss(jnp.array([[40.0, 0.0]]), jnp.array([1.0]), jnp.eye(2)[:1]))  # = log(1 + e^-40)
    4.248354255291589e-18
    """
    return losses(S, Y) @ p


@jax.jit
def margins(S: Float[Array, "*B N M"], Y: Float[Array, "N M"]) -> Float[Array, "*B N"]:
    """m(x) = S[x, f*(x)] − max_{y ≠ f*(x)} S[x, y]: how far token x is from being mispredicted.

    f*(x) is argmax_y Y[x, y]. With M = 1 there is no competitor and the margin is +inf.

    **Arguments:** `S` scores (..., N, M); `Y` targets (N, M).

    **Returns:** shape (..., N).

    >>> import jax.numpy as jnp
    >>> margins(jnp.array([[2.0, 0.5, 1.0], [0.0, 3.0, 1.0]]), jnp.eye(3)[:2]).tolist()
    [1.0, 2.0]
    """
    target = jnp.argmax(Y, axis=-1)
    mask = jnp.broadcast_to(jax.nn.one_hot(target, Y.shape[-1], dtype=bool), S.shape)
    correct = jnp.sum(jnp.where(mask, S, 0.0), axis=-1)
    best_other = jnp.max(jnp.where(mask, -jnp.inf, S), axis=-1)
    return correct - best_other


@jax.jit
def correct(S: Float[Array, "*B N M"], Y: Float[Array, "N M"]) -> Array:
    """1{argmax_y S[x, y] = f*(x)}, ties to the first index (as `argmax`).

    **Returns:** booleans, shape (..., N).

    >>> import jax.numpy as jnp
    >>> correct(jnp.zeros((2, 2)), jnp.eye(2)).tolist()  # a tie: class 0 wins
    [True, False]
    """
    return jnp.argmax(S, axis=-1) == jnp.broadcast_to(jnp.argmax(Y, axis=-1), S.shape[:-1])


@jax.jit
def accuracy(S: Float[Array, "*B N M"], p: Float[Array, " N"], Y: Float[Array, "N M"]) -> Float[Array, "*B"]:
    """Σ_x p(x) 1{argmax_y S[x, y] = f*(x)}; ties go to the first index, as in the paper's code.

    **Returns:** shape (...).

    >>> import jax.numpy as jnp
    >>> float(accuracy(jnp.zeros((2, 2)), jnp.array([0.75, 0.25]), jnp.eye(2)))
    0.75
    """
    return correct(S, Y).astype(p.dtype) @ p


@jax.jit
def zero_one(S: Float[Array, "*B N M"], p: Float[Array, " N"], Y: Float[Array, "N M"]) -> Float[Array, "*B"]:
    """The 0-1 loss Σ_x p(x) 1{argmax_y S[x, y] ≠ f*(x)} = 1 − accuracy, summed on its own: it is
    exactly 0 when every input with p > 0 is right.

    **Returns:** shape (...).

    >>> import jax.numpy as jnp
    >>> float(zero_one(jnp.zeros((2, 2)), jnp.array([0.75, 0.25]), jnp.eye(2)))
    0.25
    """
    return (~correct(S, Y)).astype(p.dtype) @ p


@jax.jit
def full_accuracy(S: Float[Array, "*B N M"], p: Float[Array, " N"], Y: Float[Array, "N M"]) -> Array:
    """Whether every input with p(x) > 0 is predicted right (ties to the first class), shape (...).

    Exact, unlike `accuracy(S) == 1` in floats; inputs outside the loss (p = 0) do not count.

    **Returns:** booleans, shape (...).

    >>> import jax.numpy as jnp
    >>> bool(full_accuracy(jnp.zeros((2, 2)), jnp.array([1.0, 0.0]), jnp.eye(2)))  # token 1 has p = 0
    True
    """
    return jnp.all(correct(S, Y) | (p == 0), axis=-1)
