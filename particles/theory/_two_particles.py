"""The paper's two-particle system (paper-notes §3.3): N = M = d = 2, f*(x) = x, U = I,
e_1 = (1, 0), e_2 = (corr, sqrt(1 - corr^2)), p = (p1, 1 - p1), W0 = 0.

Only gamma = W^T (u_1 - u_2) in R^2 matters: m1 = gamma . e_1, m2 = -gamma . e_2. With
phi(m) = 1 / (1 + e^m) one GD step on W moves gamma by 2 lr (p1 phi(m1) e_1 - p2 phi(m2) e_2),
hence the margin map below. Every formula here was re-derived and is checked in
tests/test_theory_two_particles.py against `particles.gd` on `particles.two_particles`;
all agree with the notes (no correction was needed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._orthogonal import _float


def _phi(m):
    return jax.nn.sigmoid(-m)


@jax.jit
def two_particles_step(
    m: Float[ArrayLike, "*B 2"], lr: Float[ArrayLike, "*B"], corr: Float[ArrayLike, "*B"], p1: Float[ArrayLike, "*B"]
) -> Float[Array, "*B 2"]:
    """One GD step of the margins (m1, m2): m1 += 2 lr (p1 phi(m1) - corr p2 phi(m2)),
    m2 += 2 lr (p2 phi(m2) - corr p1 phi(m1)), phi(m) = 1/(1 + e^m). Flow: lr -> dt."""
    m, lr, corr, p1 = _float(m, lr, corr, p1)
    batch = jnp.broadcast_shapes(m.shape[:-1], lr.shape, corr.shape, p1.shape)
    m = jnp.broadcast_to(m, batch + (2,))
    lr, corr, p1 = (jnp.broadcast_to(a, batch) for a in (lr, corr, p1))
    p2 = 1.0 - p1
    f1 = p1 * _phi(m[..., 0])
    f2 = p2 * _phi(m[..., 1])
    return m + 2.0 * lr[..., None] * jnp.stack([f1 - corr * f2, f2 - corr * f1], axis=-1)


def two_particles_gd_margins(
    steps: int, lr: Float[ArrayLike, ""], corr: Float[ArrayLike, ""], p1: Float[ArrayLike, ""]
) -> Float[Array, "steps+1 2"]:
    """The margins (m1, m2) of GD from W = 0, steps 0..steps, by iterating [`two_particles_step`][]."""
    lr, corr, p1 = _float(lr, corr, p1)

    def step(m, _):
        new = two_particles_step(m, lr, corr, p1)
        return new, new

    m0 = jnp.zeros(lr.shape + (2,), lr.dtype)
    _, ms = jax.lax.scan(step, m0, None, length=int(steps))
    return jnp.concatenate([m0[None], ms], axis=0)


@jax.jit
def two_particles_first_step(
    lr: Float[ArrayLike, "*B"], corr: Float[ArrayLike, "*B"], p1: Float[ArrayLike, "*B"]
) -> Float[Array, "*B 2"]:
    """Margins after one GD step from W = 0: (lr (p1 - corr p2), lr (p2 - corr p1))."""
    lr, corr, p1 = jnp.broadcast_arrays(*_float(lr, corr, p1))
    p2 = 1.0 - p1
    return jnp.stack([lr * (p1 - corr * p2), lr * (p2 - corr * p1)], axis=-1)


@jax.jit
def two_particles_forgets(corr: Float[ArrayLike, "*B"], p1: Float[ArrayLike, "*B"]) -> Array:
    """True when the first GD step mispredicts a token: corr > p_rare / p_frequent.

    The rarer token x has margin lr (p_x - corr p_other) < 0 iff corr > p_x / p_other (for any
    lr > 0); otherwise one step gives full accuracy. Exact ties (margin 0) count as not forgotten.
    """
    corr, p1 = _float(corr, p1)
    p2 = 1.0 - p1
    return (corr * p2 > p1) | (corr * p1 > p2)


@jax.jit
def two_particles_margin_asymptote(
    t: Float[ArrayLike, "*B"], lr: Float[ArrayLike, "*B"], corr: Float[ArrayLike, "*B"], p1: Float[ArrayLike, "*B"]
) -> Float[Array, "*B 2"]:
    """m_x ~ log(2 (1 - corr) lr p_x t) for |corr| < 1 (flow: lr = 1, t = time).

    Ansatz e^{-m_x} = c_x / (lr t) in the margin map: p1 c1 - corr p2 c2 = 1/2 and
    p2 c2 - corr p1 c1 = 1/2 give p_x c_x = 1 / (2 (1 - corr)); m1 - m2 -> log(p1 / p2).

    Rate (found while verifying; not in the notes): in log-time s = log t the deviations
    delta_x = m_x - asymptote obey delta' = J delta with J = [[-1, corr], [corr, -1]] / (1 - corr),
    eigenvalues -1 and -(1 + corr)/(1 - corr). For corr >= 0 the error decays like 1/t; for
    corr < 0 the antisymmetric mode (delta_1 = -delta_2) decays only like
    t^{-(1 + corr)/(1 - corr)}: t^{-1/3} at corr = -0.5 (error 4e-3 at t = 1e6), t^{-0.05} at
    corr = -0.9. The loss is first-order insensitive to that mode.
    """
    t, lr, corr, p1 = jnp.broadcast_arrays(*_float(t, lr, corr, p1))
    p = jnp.stack([p1, 1.0 - p1], axis=-1)
    return jnp.log(2.0 * ((1.0 - corr) * lr * t)[..., None] * p)


@jax.jit
def two_particles_loss_asymptote(
    t: Float[ArrayLike, "*B"], lr: Float[ArrayLike, "*B"], corr: Float[ArrayLike, "*B"]
) -> Float[Array, "*B"]:
    """L(W_t) ~ 1 / ((1 - corr) lr t), i.e. L t -> 1 / ((1 - corr) lr) (= ||W_mm||^2 / lr)."""
    t, lr, corr = _float(t, lr, corr)
    return 1.0 / ((1.0 - corr) * lr * t)


@jax.jit
def two_particles_sharpness0(corr: Float[ArrayLike, "*B"], p1: Float[ArrayLike, "*B"]) -> Float[Array, "*B"]:
    """lambda_max of the Hessian at W = 0: (1 + sqrt((p1 - p2)^2 + 4 corr^2 p1 p2)) / 4.

    At W = 0 the softmax is uniform, Cov(u_z) = (u_1 - u_2)(u_1 - u_2)^T / 4 with
    |u_1 - u_2|^2 = 2, so lambda_max = lambda_max(p1 e_1 e_1^T + p2 e_2 e_2^T) / 2; that 2 x 2
    matrix has trace 1 and determinant p1 p2 (1 - corr^2).
    """
    corr, p1 = _float(corr, p1)
    p2 = 1.0 - p1
    return (1.0 + jnp.sqrt((p1 - p2) ** 2 + 4.0 * corr**2 * p1 * p2)) / 4.0


def _first_step_excess(lr, corr, p1):
    m = two_particles_first_step(lr, corr, p1)
    p = jnp.stack([p1, 1.0 - p1], axis=-1)
    return jnp.sum(p * jax.nn.softplus(-m), axis=-1) - jnp.log(2.0)


def two_particles_spike_lr(corr: Float[ArrayLike, "*B"], p1: Float[ArrayLike, "*B"]) -> Float[Array, "*B"]:
    """The smallest lr for which the first GD step from W = 0 raises the loss above log 2.

    The loss after one step, g(lr) = p1 softplus(-m1) + p2 softplus(-m2) with the margins of
    [`two_particles_first_step`][], is convex in lr with g'(0) < 0, so g(lr) = log 2 has at
    most one root lr* > 0: below it the first step lowers the loss, above it raises it. No
    root (+inf) when no margin turns negative (corr <= min(p1/p2, p2/p1)). The root is
    bracketed by lr_hi = log 2 / max_x(p_x max(0, -slope_x)) (softplus(s) >= s) and found by
    bisection (jit/vmap-able; 200 halvings reach float64 resolution). There is no closed
    form; note lr* is NOT 2 / lambda_max (a loss increase needs a margin to turn negative).
    """
    corr, p1 = jnp.broadcast_arrays(*_float(corr, p1))
    p2 = 1.0 - p1
    neg = jnp.maximum(jnp.maximum(p1 * (corr * p2 - p1), p2 * (corr * p1 - p2)), 0.0)
    never = neg <= 0
    hi = jnp.log(2.0) / jnp.where(never, 1.0, neg)
    lo = jnp.zeros_like(hi)

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        up = _first_step_excess(mid, corr, p1) > 0
        return jnp.where(up, lo, mid), jnp.where(up, mid, hi)

    lo, hi = jax.lax.fori_loop(0, 200, halve, (lo, hi))
    return jnp.where(never, jnp.inf, hi)


@jax.jit
def two_particles_wedge_angle(corr: Float[ArrayLike, "*B"]) -> Float[Array, "*B"]:
    """Opening angle arccos(corr) of the perfect-accuracy wedge {gamma . e_1 > 0, gamma . e_2 < 0}.

    The wedge is cut by two half-planes with inner normals e_1 and -e_2, which meet at angle
    arccos(-corr); the opening is pi - arccos(-corr) = arccos(corr).
    """
    (corr,) = _float(corr)
    return jnp.arccos(corr)


@jax.jit
def two_particles_margins_from_gamma(gamma: Float[ArrayLike, "*B 2"], corr: Float[ArrayLike, "*B"]) -> Float[Array, "*B 2"]:
    """(m1, m2) = (gamma . e_1, -gamma . e_2) for gamma = W^T (u_1 - u_2)."""
    gamma, corr = _float(gamma, corr)
    batch = jnp.broadcast_shapes(gamma.shape[:-1], corr.shape)
    gamma = jnp.broadcast_to(gamma, batch + (2,))
    corr = jnp.broadcast_to(corr, batch)
    e2 = jnp.stack([corr, jnp.sqrt(jnp.maximum(1.0 - corr**2, 0.0))], axis=-1)
    return jnp.stack([gamma[..., 0], -jnp.sum(gamma * e2, axis=-1)], axis=-1)
