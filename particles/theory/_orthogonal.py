"""Orthogonal embeddings (G_E = I, G_U = I, W0 = 0): closed forms of paper-notes §3.1.

Each particle moves alone. The wrong classes of input x keep equal scores, so one number,
the margin m = S[x, f*(x)] - S[x, y != f*(x)], carries the state:

- loss of x: log(1 + (M - 1) e^{-m});
- flow: dm/dt = M p / (e^m + M - 1), i.e. e^m + (M - 1) m = M p t + e^{m0} + (M - 1) m0;
- GD: m_{t+1} = m_t + lr M p / (e^{m_t} + M - 1).

Everything here broadcasts over its arguments and is jit-, vmap- and grad-able.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .. import _validate as v
from ._lambertw import log_lambertw_exp


def _float(*xs):
    dtype = jnp.result_type(float, *[jnp.asarray(x).dtype for x in xs])
    return [jnp.asarray(x, dtype) for x in xs]


def _check_M(M):
    if v.is_concrete(M) and np.any(np.asarray(M) < 1):
        v.fail("M", M, "the number of classes must be >= 1")


def orthogonal_flow_margin(
    t: Float[ArrayLike, "*B"],
    p: Float[ArrayLike, "*B"],
    M: int | Float[ArrayLike, "*B"],
    m0: Float[ArrayLike, "*B"] = 0.0,
) -> Float[Array, "*B"]:
    """Margin of one input under gradient flow with orthogonal embeddings.

    Solves e^m + (M - 1) m = M p t + e^{m0} + (M - 1) m0 exactly: with
    c = K / (M - 1) (K the right-hand side) and w = W0(e^c / (M - 1)) one has
    e^m = (M - 1) w, so m = log(M - 1) + log w with log w from the log-space Lambert W
    ([`log_lambertw_exp`][]): finite and accurate for any t (t = 1e300 included). This
    form never subtracts two large numbers (the notes' m = c - w does, at large t).

    **Arguments** (broadcast together):

    - `t`: time(s) t >= 0.
    - `p`: the input's frequency p(x) >= 0.
    - `M`: number of classes >= 1. With M = 1 there is no competitor: the margin is +inf
      (the convention of `particles.margins`).
    - `m0`: the margin at t = 0 (0 for W0 = 0).

    **Returns:** m(t), the broadcast shape.
    """
    _check_M(M)
    t, p, M, m0 = _float(t, p, M, m0)
    t, p, M, m0 = jnp.broadcast_arrays(t, p, M, m0)
    one = M <= 1
    Mm1 = jnp.where(one, 1.0, M - 1.0)
    K = M * p * t + jnp.exp(m0) + Mm1 * m0
    logz = K / Mm1 - jnp.log(Mm1)
    m = jnp.log(Mm1) + log_lambertw_exp(logz)
    return jnp.where(one, jnp.inf, m)


def orthogonal_gd_margin(
    steps: int,
    lr: Float[ArrayLike, "*B"],
    p: Float[ArrayLike, "*B"],
    M: int | Float[ArrayLike, "*B"],
) -> Float[Array, "steps+1 *B"]:
    """Margins of GD with orthogonal embeddings, from step 0 (m_0 = 0) to `steps`.

    m_{t+1} = m_t + lr M p / (e^{m_t} + M - 1), run as one `lax.scan`. The update is
    written lr M p e^{-m} / (1 + (M - 1) e^{-m}) so that large margins do not overflow.

    **Arguments:**

    - `steps`: number of steps (a static Python int >= 0).
    - `lr`, `p`, `M`: step size, frequency and number of classes (broadcast together).

    **Returns:** the margins, shape (steps + 1, *broadcast shape); +inf when M = 1.
    """
    steps = v.check_count("steps", steps, 0)
    _check_M(M)
    lr, p, M = _float(lr, p, M)
    lr, p, M = jnp.broadcast_arrays(lr, p, M)
    force = lr * M * p

    def step(m, _):
        q = jnp.exp(-m)
        new = m + force * q / (1.0 + (M - 1.0) * q)
        return new, new

    m0 = jnp.zeros_like(force)
    _, ms = jax.lax.scan(step, m0, None, length=steps)
    ms = jnp.concatenate([m0[None], ms], axis=0)
    return jnp.where(M <= 1, jnp.inf, ms)


def orthogonal_gd_margin_bound(
    steps: Float[ArrayLike, "*B"],
    lr: Float[ArrayLike, "*B"],
    p: Float[ArrayLike, "*B"],
    M: int | Float[ArrayLike, "*B"],
) -> Float[Array, "*B"]:
    """A lower bound on the GD margin after `steps` steps: the flow margin at time lr * steps.

    Since F(m) = e^m + (M - 1) m is convex, F(m_{t+1}) - F(m_t) >= F'(m_t)(m_{t+1} - m_t)
    = lr M p, so F(m_t) >= 1 + lr M p t for every step size: GD margins dominate the flow.

    **Returns:** the m solving e^m + (M - 1) m = 1 + lr M p t (broadcast shape).
    """
    steps, lr = _float(steps, lr)
    return orthogonal_flow_margin(lr * steps, p, M)


@jax.jit
def orthogonal_margin_asymptote(
    t: Float[ArrayLike, "*B"], p: Float[ArrayLike, "*B"], M: int | Float[ArrayLike, "*B"]
) -> Float[Array, "*B"]:
    """log(M p t): the flow margin for large t (for GD, pass t = lr * steps).

    From m = log(M - 1) + log w with w + log w = (M p t + 1)/(M - 1) - log(M - 1):
    m = log(M p t) - O(log t / t).
    """
    t, p, M = _float(t, p, M)
    return jnp.log(M * p * t)


@jax.jit
def orthogonal_loss(
    m: Float[ArrayLike, "*B N"], p: Float[ArrayLike, " N"], M: int | Float[ArrayLike, ""]
) -> Float[Array, "*B"]:
    """L = sum_x p(x) log(1 + (M - 1) e^{-m(x)}), as softplus(log(M - 1) - m): no overflow.

    **Arguments:**

    - `m`: margins, shape (..., N).
    - `p`: frequencies, shape (N,).
    - `M`: number of classes (M = 1 gives 0).

    **Returns:** the loss, shape (...).
    """
    m, p, M = _float(m, p, M)
    logMm1 = jnp.where(M > 1, jnp.log(jnp.where(M > 1, M - 1.0, 1.0)), -jnp.inf)
    per = jax.nn.softplus(logMm1 - m)
    return jnp.sum(per * jnp.broadcast_to(p, per.shape), axis=-1)


@jax.jit
def orthogonal_loss_asymptote(
    t: Float[ArrayLike, "*B"], N: int, M: int | Float[ArrayLike, ""], lr: Float[ArrayLike, "*B"] = 1.0
) -> Float[Array, "*B"]:
    """N (M - 1) / (M lr t): the loss after t GD steps of size lr (flow: lr = 1, t = time).

    Each input contributes p (M - 1) e^{-m} ~ p (M - 1) / (M p lr t), independently of p;
    valid once every input with p > 0 has a large margin (N counts inputs with p > 0).
    """
    t, M, lr = _float(t, M, lr)
    return N * (M - 1.0) / (M * lr * t)
