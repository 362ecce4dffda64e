"""The paper's two-particle system (paper-notes §3.3): N = M = d = 2, f*(x) = x, U = I,
e_1 = (1, 0), e_2 = (corr, sqrt(1 - corr^2)), p = (p1, 1 - p1), W0 = 0.

Only gamma = W^T (u_1 - u_2) in R^2 matters: m1 = gamma . e_1, m2 = -gamma . e_2. With
phi(m) = 1 / (1 + e^m) one GD step on W moves gamma by 2 lr (p1 phi(m1) e_1 - p2 phi(m2) e_2),
hence the margin map below. Every formula here was re-derived and is checked in
tests/test_theory_two_particles.py against `particles.gd` on `particles.two_particles` or
an independent integration. Two corrections to the notes: "forgetting" counts ties as
`particles.accuracy` does (argmax ties go to class 0, the target of token 1), so with
p1 > p2 the rare token 2 is mispredicted after one step iff corr >= p2/p1, not corr > p2/p1;
and the asymptotes are approached at rates the notes do not give, t^{-(1+corr)/(1-corr)}
for the margins when corr < 0 (see `two_particles_margin_asymptote`).
"""

from __future__ import annotations

import functools
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._orthogonal import _float


def two_particles_coefficients(lr, corr, p1) -> tuple:
    """The four coefficients of [`two_particles_margin_map`][]:
    (a11, a12, a22, a21) = (2 lr p1, 2 lr corr p2, 2 lr p2, 2 lr corr p1), p2 = 1 - p1.

    Hoist them out of a loop over steps; they broadcast like their arguments.
    """
    p2 = 1 - p1
    return 2 * lr * p1, 2 * lr * corr * p2, 2 * lr * p2, 2 * lr * corr * p1


def two_particles_margin_map(m1, m2, a11, a12, a22, a21) -> tuple:
    """One GD step of the two margins: the single implementation of the map.

        m1 <- m1 + a11 phi(m1) - a12 phi(m2),
        m2 <- m2 + a22 phi(m2) - a21 phi(m1),      phi(m) = 1 / (1 + e^m),

    with the coefficients of [`two_particles_coefficients`][]. Plain `jnp` arithmetic on
    arrays that broadcast together (no jit of its own, so it inlines into a caller's scan,
    e.g. `particles._grid`'s sweep kernel); e^m overflowing to inf gives phi = 0.

    **Returns:** the new (m1, m2).

    >>> from particles.theory import two_particles_coefficients, two_particles_margin_map
    >>> a = two_particles_coefficients(1.0, 0.5, 0.75)
    >>> [float(m) for m in two_particles_margin_map(0.0, 0.0, *a)]  # lr (p_x - corr p_other)
    [0.625, -0.125]
    """
    f1 = 1 / (1 + jnp.exp(m1))
    f2 = 1 / (1 + jnp.exp(m2))
    return m1 + (a11 * f1 - a12 * f2), m2 + (a22 * f2 - a21 * f1)


@jax.jit
def two_particles_step(
    m: Float[ArrayLike, "*B 2"], lr: Float[ArrayLike, "*B"], corr: Float[ArrayLike, "*B"], p1: Float[ArrayLike, "*B"]
) -> Float[Array, "*B 2"]:
    """One GD step of the margins (m1, m2): m1 += 2 lr (p1 phi(m1) - corr p2 phi(m2)),
    m2 += 2 lr (p2 phi(m2) - corr p1 phi(m1)), phi(m) = 1/(1 + e^m). Flow: lr -> dt.

    The stacked-array form of [`two_particles_margin_map`][] (which it calls)."""
    m, lr, corr, p1 = _float(m, lr, corr, p1)
    batch = jnp.broadcast_shapes(m.shape[:-1], lr.shape, corr.shape, p1.shape)
    m = jnp.broadcast_to(m, batch + (2,))
    lr, corr, p1 = (jnp.broadcast_to(a, batch) for a in (lr, corr, p1))
    m1, m2 = two_particles_margin_map(m[..., 0], m[..., 1], *two_particles_coefficients(lr, corr, p1))
    return jnp.stack([m1, m2], axis=-1)


def two_particles_gd_margins(
    steps: int, lr: Float[ArrayLike, ""], corr: Float[ArrayLike, ""], p1: Float[ArrayLike, ""]
) -> Float[Array, "steps+1 2"]:
    """The margins (m1, m2) of GD from W = 0, steps 0..steps, by iterating [`two_particles_step`][].

    One compiled scan per number of steps: new values of lr, corr, p1 reuse it.
    """
    return _gd_margins(int(steps), *_float(lr, corr, p1))


@functools.partial(jax.jit, static_argnums=0)
def _gd_margins(steps: int, lr, corr, p1):

    def step(m, _):
        new = two_particles_step(m, lr, corr, p1)
        return new, new

    m0 = jnp.zeros(lr.shape + (2,), lr.dtype)
    _, ms = jax.lax.scan(step, m0, None, length=steps)
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
    """True when the first GD step (any lr > 0) mispredicts a token, as `particles.accuracy` counts.

    After one step from W = 0 the margins are m1 = lr (p1 - corr p2), m2 = lr (p2 - corr p1).
    Argmax ties go to class 0, the target of token 1: token 1 is right iff m1 >= 0, token 2
    iff m2 > 0. So the answer is corr p2 > p1 or corr p1 >= p2; with p1 > p2 that is
    corr >= p2 / p1 (the rare token 2 is forgotten, a tie included), with p2 > p1 it is
    corr > p1 / p2 (a tie keeps token 1 right), and with p1 = p2 it is corr >= 1.
    A token with p = 0 counts like any other (p1 = 1: token 2 is wrong for corr >= 0).

    >>> from particles.theory import two_particles_forgets
    >>> [bool(two_particles_forgets(c, q)) for c, q in ((1.0, 0.5), (0.5, 0.75), (0.2, 0.75))]
    [True, True, False]
    """
    corr, p1 = _float(corr, p1)
    p2 = 1.0 - p1
    return (corr * p2 > p1) | (corr * p1 >= p2)


@jax.jit
def two_particles_margin_asymptote(
    t: Float[ArrayLike, "*B"], lr: Float[ArrayLike, "*B"], corr: Float[ArrayLike, "*B"], p1: Float[ArrayLike, "*B"]
) -> Float[Array, "*B 2"]:
    """m_x ~ log(2 (1 - corr) lr p_x t) for |corr| < 1 (flow: lr = 1, t = time).

    Ansatz e^{-m_x} = c_x / (lr t) in the margin map: p1 c1 - corr p2 c2 = 1/2 and
    p2 c2 - corr p1 c1 = 1/2 give p_x c_x = 1 / (2 (1 - corr)); m1 - m2 -> log(p1 / p2).

    Rate: in log-time s = log t the deviations delta_x = m_x - asymptote obey, to first
    order, delta' = J delta with J = [[-1, corr], [corr, -1]] / (1 - corr): eigenvalues -1
    (the symmetric mode, delta_1 = delta_2) and -(1 + corr)/(1 - corr) (the antisymmetric
    one). So for corr < 0 and p1 != 1/2 the error decays like t^{-(1 + corr)/(1 - corr)},
    slower than 1/t; for corr >= 0 (or p1 = 1/2, where m1 = m2 and the antisymmetric mode
    is never excited) like log(t) / t, the next order of the expansion. Measured on an
    independent integration of the flow at p1 = 0.75 (tests/test_theory_two_particles.py):
    local exponents 0.054, 0.176, 0.333, 0.538 at corr = -0.9, -0.7, -0.5, -0.3 (predicted
    0.053, 0.176, 0.333, 0.538); the error is 4.6e-3 at t = 1e6 and 2.1e-4 at t = 1e10 for
    corr = -0.5, and its size scales with how unbalanced p is. For GD at a large lr the
    first step's margins lr (p_x - corr p_other) must be forgotten first: the asymptote needs
    lr t >> e^{|those margins|} (compare `orthogonal_asymptote_valid`).
    """
    t, lr, corr, p1 = jnp.broadcast_arrays(*_float(t, lr, corr, p1))
    p = jnp.stack([p1, 1.0 - p1], axis=-1)
    return jnp.log(2.0 * ((1.0 - corr) * lr * t)[..., None] * p)


@jax.jit
def two_particles_loss_asymptote(
    t: Float[ArrayLike, "*B"], lr: Float[ArrayLike, "*B"], corr: Float[ArrayLike, "*B"]
) -> Float[Array, "*B"]:
    """L(W_t) ~ 1 / ((1 - corr) lr t), i.e. L t -> 1 / ((1 - corr) lr) (= ||W_mm||^2 / lr).

    Rate: the loss is first-order blind to the antisymmetric mode of
    [`two_particles_margin_asymptote`][] (it is orthogonal to W_mm), which enters at second
    order: L (1 - corr) lr t - 1 decays like t^{-2(1 + corr)/(1 - corr)} for corr < -1/3
    (p1 != 1/2), slower than 1/t, and like log(t) / t for corr >= -1/3. Measured on an
    independent integration of the flow at p1 = 0.75: local exponents 0.105, 0.353, 0.665
    at corr = -0.9, -0.7, -0.5 (predicted 0.105, 0.353, 0.667); for corr >= -1/3,
    (L (1 - corr) t - 1) t / log t settles near a constant (at t = 1e12: 0.97, 1.24, 2.44, 11.6
    for corr = -0.3, 0, 0.5, 0.9). This
    is `max_margin(...).rate` = min(kappa - 1, 2 mu, 1) of the general separable case, with
    mu = (1 + corr)/(1 - corr). Large lr: see [`two_particles_margin_asymptote`][].
    """
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
