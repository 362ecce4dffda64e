"""The score-space dynamics: the one definition under every integrator, sweep and kernel.

Gradient descent on W maps exactly to the scores S = E Wᵀ Uᵀ:

    S ← S − η · G_E · diag(w) · (softmax(S) − Y) · G_U,

with w = p for full-batch GD, w = (counts in a minibatch) / B for SGD, and the gradient flow
dS/dt = −G_E diag(p) (softmax(S) − Y) G_U. Everything that moves particles calls
[`force`][] (through [`gd_step`][] or [`flow_field`][]); [`residual`][] is the per-particle
pull before the Grams mix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

if TYPE_CHECKING:  # the problem module imports this one
    from ._problem import Problem


@jax.jit
def residual(S: Float[Array, "*B N M"], Y: Float[Array, "N M"]) -> Float[Array, "*B N M"]:
    """softmax(S) − Y: minus the force on each particle, before weighting and mixing.

    At large margins softmax(S)[f*(x)] − 1 cancels catastrophically (1 − 1e-12 keeps four
    correct digits), so the entry of the target class f*(x) = argmax_y Y[x, y] is computed
    as minus the sum of the others (each row of the residual sums to zero); every entry then
    has full relative precision.

    **Arguments:**

    - `S`: scores, shape (..., N, M).
    - `Y`: one-hot targets or rows of q(y|x), shape (N, M).

    **Returns:** the residual, shape of `S`.

    >>> import jax.numpy as jnp
    >>> residual(jnp.array([[40.0, 0.0]]), jnp.eye(2)[:1]).tolist()  # doctest: +ELLIPSIS
    [[-4.24...e-18, 4.24...e-18]]
    """
    R = jax.nn.softmax(S, axis=-1) - Y
    target = jnp.broadcast_to(jax.nn.one_hot(jnp.argmax(Y, axis=-1), Y.shape[-1], dtype=bool), R.shape)
    others = jnp.sum(jnp.where(target, 0.0, R), axis=-1, keepdims=True)
    return jnp.where(target, -others, R)


def target_residual(S: Float[Array, "c M"], targets: Int[Array, " c"]) -> Float[Array, "c M"]:
    """[`residual`][] for one-hot targets given as class indices (no dense Y is formed).

    The form of the vocabulary-scale path, where a dense (c, M) one-hot block would cost as
    much memory as the scores themselves; same cancellation-free target entry.

    **Arguments:** `S` scores (c, M); `targets` ints (c,).

    **Returns:** softmax(S) − one_hot(targets), shape (c, M).
    """
    P = jax.nn.softmax(S, axis=-1)
    is_target = jnp.arange(S.shape[-1])[None, :] == targets[:, None]
    others = jnp.sum(jnp.where(is_target, 0.0, P), axis=-1, keepdims=True)
    return jnp.where(is_target, -others, P)


def direction(problem: "Problem", R: Float[Array, "N M"]) -> Float[Array, "N M"]:
    """G_E R G_U at the cost of the problem's structure: the score-space image of the W-space
    gradient Uᵀ Rᵀ E.

    Identity Grams cost nothing, factored ones (d ≪ N, M) are applied through E or U
    (E (Eᵀ X): 2 N d per column instead of N²), dense ones as matrices; the constructors
    choose (`problem.structure_E`, `problem.structure_U`).

    **Arguments:** `problem`; `R` (N, M). **Returns:** G_E R G_U, shape (N, M).
    """
    if problem.structure_E == "factored":
        R = problem.E @ (problem.E.T @ R)
    elif problem.structure_E == "dense":
        R = problem.G_E @ R
    if problem.structure_U == "factored":
        R = (R @ problem.U) @ problem.U.T
    elif problem.structure_U == "dense":
        R = R @ problem.G_U
    return R


def force(problem: "Problem", S: Float[Array, "N M"], weights: Optional[Float[Array, " N"]] = None):
    """−G_E diag(w) (softmax(S) − Y) G_U: the velocity of the particles, dS/dt of the flow.

    **Arguments:**

    - `problem`: the [`Problem`][].
    - `S`: scores, shape (N, M).
    - `weights`: the weight of each input in the loss, shape (N,); `problem.p` when omitted
      (full batch), minibatch frequencies for SGD ([`minibatch_weights`][]).

    **Returns:** shape (N, M).

    >>> import particles as pt
    >>> problem = pt.orthogonal([0.5, 0.5])
    >>> force(problem, problem.S0).tolist()  # each particle pulled toward its class by p/2
    [[0.25, -0.25], [-0.25, 0.25]]
    """
    w = problem.p if weights is None else weights
    return -direction(problem, w[:, None] * residual(S, problem.Y))


def gd_step(problem: "Problem", S, lr, weights=None, weight_decay=0.0) -> Float[Array, "N M"]:
    """One step S + lr · force(S): GD on W, mapped to the scores (SGD with minibatch weights).

    With `weight_decay` λ (GD on W of L + λ‖W‖²/2, i.e. W ← W − lr (∇L + λ W), as torch's
    SGD) the scores that come from W shrink too: S ← S + lr force(S) − lr λ (S − offset),
    exactly, with `problem.offset` the scores that do not come from W (zero when None).

    **Arguments:** `problem`; `S` scores (N, M); `lr` the step size; `weights` as in
    [`force`][]; `weight_decay` λ ≥ 0. **Returns:** the next scores, shape (N, M).

    >>> import particles as pt
    >>> problem = pt.two_particles(corr=0.5, p1=0.75)
    >>> gd_step(problem, problem.S0, 1.0).round(4).tolist()  # margins lr (p_x - corr p_other)
    [[0.3125, -0.3125], [0.0625, -0.0625]]
    """
    step = S + lr * force(problem, S, weights)
    if isinstance(weight_decay, (int, float)) and weight_decay == 0:
        return step  # no decay: not even a multiplication by 0 (a traced λ always decays)
    own = S if problem.offset is None else S - problem.offset
    return step - lr * weight_decay * own


def minibatch_weights(key: PRNGKeyArray, p: Float[Array, " N"], batch_size: int) -> Float[Array, " N"]:
    """The weights of one SGD step: counts of x in a batch of `batch_size` draws x ~ p (with
    replacement), divided by the batch size. Their expectation is p (unbiased gradient).

    The draw inverts the cumulative frequencies (`jax.random.choice` with `p`): O(B log N)
    per step, where a categorical draw costs O(B N); inputs with p = 0 are never drawn.

    **Arguments:** `key` a PRNG key; `p` (N,); `batch_size` B. **Returns:** shape (N,),
    multiples of 1/B summing to 1.

    >>> import jax, jax.numpy as jnp
    >>> w = minibatch_weights(jax.random.key(0), jnp.array([0.5, 0.5, 0.0]), 4)
    >>> float(w.sum()), float(w[2])
    (1.0, 0.0)
    """
    idx = jax.random.choice(key, p.shape[0], (batch_size,), replace=True, p=p)
    return jnp.zeros(p.shape, p.dtype).at[idx].add(1.0 / batch_size)


def flow_field(t, S: Float[Array, "N M"], problem: "Problem") -> Float[Array, "N M"]:
    """dS/dt = force(S) in diffrax's argument order (t, y, args). **Returns:** shape (N, M)."""
    return force(problem, S)


def log_time_field(s, S: Float[Array, "N M"], problem: "Problem") -> Float[Array, "N M"]:
    """dS/ds with s = log(1 + t): e^s force(S). Margins grow like log t, so log-time steps are
    even where steps in t would grow geometrically. **Returns:** shape (N, M)."""
    return jnp.exp(s) * force(problem, S)
