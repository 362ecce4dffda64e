"""Orthogonal embeddings (G_E = I, G_U = I, W0 = 0): closed forms of paper-notes §3.1.

Each particle moves alone. The wrong classes of input x keep equal scores, so one number,
the margin m = S[x, f*(x)] - S[x, y != f*(x)], carries the state:

- loss of x: log(1 + (M - 1) e^{-m});
- flow: dm/dt = M p / (e^m + M - 1), i.e. e^m + (M - 1) m = M p t + e^{m0} + (M - 1) m0;
- GD: m_{t+1} = m_t + lr M p / (e^{m_t} + M - 1).

Everything here broadcasts over its arguments and is jit-, vmap- and grad-able.
"""

from __future__ import annotations

from typing import Optional

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
    """log(M p t): the flow margin for large t (for GD with step lr, pass t = lr * steps).

    Flow: from m = log(M - 1) + log w with w + log w = (M p t + 1)/(M - 1) - log(M - 1),
    m = log(M p t) - ((M - 1) log(M p t) - 1) / (M p t) + ..., an O(log t / t) error.

    GD: valid only once lr M p t >> e^{lr p}, not merely "for large t". The first step
    from W = 0 puts the margin at exactly lr p, and while e^m >> M, each step adds only
    about lr M p e^{-m}: e^m + (M - 1) m grows by ~lr M p per step from its value after
    step 1 (at least that much, by convexity). So m_t ~ log(e^{lr p} + lr M p t): with
    lr = 100, p = 0.5, M = 3 the margin is still 50.0 after 20,000 steps, against
    log(lr M p t) = 14.9. [`orthogonal_asymptote_error`][] predicts the error and
    [`orthogonal_asymptote_valid`][] says where it is below a tolerance.
    """
    t, p, M = _float(t, p, M)
    return jnp.log(M * p * t)


def orthogonal_asymptote_error(
    t: Float[ArrayLike, "*B"],
    p: Float[ArrayLike, "*B"],
    M: int | Float[ArrayLike, "*B"],
    lr: Optional[Float[ArrayLike, "*B"]] = None,
) -> Float[Array, "*B"]:
    """Predicted m(t) - log(lr M p t): how far the margin is from [`orthogonal_margin_asymptote`][].

    - Flow (`lr=None`, t = time): the exact margin ([`orthogonal_flow_margin`][]) minus
      log(M p t).
    - GD (t = steps of size `lr`): the margin m^ solving
      e^m + (M - 1) m = e^{lr p} + (M - 1) lr p + lr M p (t - 1), i.e. the flow restarted
      after the exact first step m_1 = lr p, minus log(lr M p t). m^ is a lower bound on the
      GD margin (convexity, as in [`orthogonal_gd_margin_bound`][]) that captures the
      first-step overshoot, the cause of the asymptote's failure at large lr. Against GD
      (tests/test_theory_orthogonal.py, lr in [0.1, 100], M in {2, 3, 10}, p in
      [0.01, 0.5]) it falls short of the measured error by at most 0.15 nats at t = 10,
      0.025 at 100, 4e-3 at 1e3 and 5e-4 at 1e4 (the later steps' own overshoot,
      ~log(t)/(2t)); on the issue's case (lr = 100, p = [.5, .3, .15, .05], M = 3,
      t = 20,000) it gives 35.09, 15.60, 1.533, 4e-4 against 35.09, 15.60, 1.533, 6e-4.

    Since each input's loss is p (M - 1) e^{-m} at large margins, expm1(-error) is also the
    predicted relative error of its loss term against the asymptote p (M - 1) / (lr M p t).

    **Arguments** (broadcast together): `t` (> 0), `p` (> 0), `M` (>= 2), `lr` (> 0) or `None`.

    **Returns:** the predicted error in nats (broadcast shape); +inf at t = 0 or p = 0,
    NaN for M = 1 (no finite margin).

    >>> from particles.theory import orthogonal_asymptote_error
    >>> [round(float(e), 2) for e in orthogonal_asymptote_error(2e4, jnp.array([0.5, 0.05]), 3, lr=100.0)]
    [35.09, 0.0]
    """
    _check_M(M)
    if lr is None:
        t, p, M = _float(t, p, M)
        m = orthogonal_flow_margin(t, p, M)
        scale = M * p * t
    else:
        v.check_positive("lr", lr)
        t, p, M, lr = _float(t, p, M, lr)
        m1 = lr * p
        m = orthogonal_flow_margin(lr * jnp.maximum(t - 1.0, 0.0), p, M, m0=m1)
        m = jnp.where(t >= 1.0, m, 0.0)
        scale = lr * M * p * t
    err = m - jnp.log(scale)
    return jnp.where(M <= 1, jnp.nan, err)


def orthogonal_asymptote_valid(
    t: Float[ArrayLike, "*B"],
    p: Float[ArrayLike, "*B"],
    M: int | Float[ArrayLike, "*B"],
    lr: Optional[Float[ArrayLike, "*B"]] = None,
    rtol: float = 0.01,
) -> Array:
    """Where the orthogonal asymptotes hold to relative tolerance `rtol`, per input.

    True where the predicted error of [`orthogonal_asymptote_error`][] gives
    |e^{m - log(lr M p t)} - 1| <= rtol: e^m, and so the input's loss term, within rtol of
    the asymptote (the margin itself within ~rtol nats). For GD this needs
    lr M p t >> e^{lr p}: e.g. lr = 100, M = 3, p = 0.05 holds after 20,000 steps but
    p = 0.5 would need ~e^50 / 150 steps. The loss asymptote N (M - 1) / (M lr t)
    ([`orthogonal_loss_asymptote`][]) holds to about rtol where every input with p > 0 does.

    **Arguments:** as [`orthogonal_asymptote_error`][], plus `rtol` > 0.

    **Returns:** a bool array, the broadcast shape (False for M = 1, p = 0 or t = 0).

    >>> import jax.numpy as jnp
    >>> from particles.theory import orthogonal_asymptote_valid
    >>> orthogonal_asymptote_valid(2e4, jnp.array([0.5, 0.3, 0.15, 0.05]), 3, lr=100.0).tolist()
    [False, False, False, True]
    """
    v.check_positive("rtol", rtol)
    err = orthogonal_asymptote_error(t, p, M, lr)
    return jnp.abs(jnp.expm1(err)) <= rtol


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

    Each input contributes p (M - 1) e^{-m} ~ p (M - 1) / (M p lr t), independently of p
    (N counts inputs with p > 0). Valid once every input with p > 0 follows the margin
    asymptote: for the flow, with relative error O(log(t) / t); for GD only once
    lr M p t >> e^{lr p} for every such input (the first step's overshoot: at lr = 100,
    p = 0.5 the margin sits at 50 for ~e^50 / (lr M p) steps, so the loss is far below this
    prediction). [`orthogonal_asymptote_valid`][] tells, input by input.
    """
    t, M, lr = _float(t, M, lr)
    return N * (M - 1.0) / (M * lr * t)
