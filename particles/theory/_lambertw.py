"""The principal branch W0 of the Lambert W function on (0, inf), in log space.

The orthogonal flow margin needs W0(e^c / (M - 1)) with c ~ M p t / (M - 1): e^c overflows
float64 for t >~ 1e3, so the argument is passed as its logarithm. We solve for v = log W0,
which satisfies e^v + v = log z, an increasing convex equation in v on all of R: Newton
from above converges monotonically and quadratically, with no domain problems for any
log z, including log z < -745 where z itself underflows to 0 (no scipy; jit-, vmap- and
grad-able; the derivative is implicit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

# Newton on e^v + v = L from the starting guess below gains >= 2x digits per step; 8 steps
# are far more than float64 needs over the whole range (checked in the tests against scipy
# for log z in [-708, 700], and against the defining equation out to -1e300 and 1e300).
_NEWTON_STEPS = 8


def _start(L):
    # W0(z) <= log(1 + z) for z >= 0, so this guess is >= the root (Newton then decreases
    # monotonically); for huge L, log(1 + e^L) = L is within log L of the root. For very
    # negative L, softplus(L) = e^L is subnormal (L < -708) or 0 (L < -745) and its log
    # loses digits or is -inf (then Newton gives NaN); there W0(z) <= z gives the guess L,
    # also >= the root, and already within e^L of it.
    big = L > 30.0
    tiny = L < -30.0
    safe = jnp.where(big | tiny, 0.0, L)
    small_guess = jnp.log(jax.nn.softplus(safe))
    large_guess = jnp.log(jnp.where(big, L, 1.0))
    return jnp.where(big, large_guess, jnp.where(tiny, L, small_guess))


@jax.custom_jvp
def log_lambertw_exp(logz: Float[ArrayLike, "*B"]) -> Float[Array, "*B"]:
    """log W0(e^logz): the logarithm of the principal Lambert W at z = e^logz.

    **Arguments:**

    - `logz`: log of the argument, any real (array, any shape); +inf gives +inf, -inf
      gives -inf. Where e^logz underflows (logz < -745) the result is still finite:
      v = logz - W0(e^logz) = logz to float64 precision once logz < -40.

    **Returns:** v with e^v + v = logz, same shape. Exact derivative dv/dlogz = 1/(1 + W).

    >>> from particles.theory import log_lambertw_exp
    >>> [round(float(v), 6) for v in log_lambertw_exp(jnp.array([-800.0, 0.0, 1e6]))]  # 0: log W0(1) = -W0(1)
    [-800.0, -0.567143, 13.815497]
    """
    L = jnp.asarray(logz)
    if not jnp.issubdtype(L.dtype, jnp.floating):
        L = L.astype(jnp.result_type(float))
    finite = jnp.isfinite(L)
    Lf = jnp.where(finite, L, 0.0)

    def newton(v, _):
        ev = jnp.exp(v)
        return v - (ev + v - Lf) / (ev + 1.0), None

    v, _ = jax.lax.scan(newton, _start(Lf), None, length=_NEWTON_STEPS)
    # W0(+inf) = +inf; W0(0) = 0 so log W0(e^-inf) = -inf; NaN stays NaN.
    return jnp.where(finite, v, L)


@log_lambertw_exp.defjvp
def _log_lambertw_exp_jvp(primals, tangents):
    (L,), (dL,) = primals, tangents
    v = log_lambertw_exp(L)
    return v, dL / (1.0 + jnp.exp(v))


def lambertw_exp(logz: Float[ArrayLike, "*B"]) -> Float[Array, "*B"]:
    """W0(e^logz), the principal Lambert W of z = e^logz > 0, robust for huge logz.

    **Arguments:**

    - `logz`: log of the argument (any real; logz = 1e300 is fine).

    **Returns:** w >= 0 with w + log w = logz, same shape. For logz > ~709 the result is
    finite although e^logz is not.
    """
    L = jnp.asarray(logz)
    w = jnp.exp(log_lambertw_exp(L))
    # exp(v) carries v's rounding times |v| (~700 ulps at logz = 1e300): one Newton step on
    # w + log w = logz, in w itself, brings w back to a few ulps.
    ok = jnp.isfinite(w) & (w > 0)
    ws = jnp.where(ok, w, 1.0)
    Ls = jnp.where(ok, L, 1.0)
    polished = ws - (ws + jnp.log(ws) - Ls) / (1.0 + 1.0 / ws)
    return jnp.where(ok, polished, w)


def lambertw(z: Float[ArrayLike, "*B"]) -> Float[Array, "*B"]:
    """W0(z) for z >= 0 (principal branch; z < 0 gives NaN here: use scipy for the branch cut)."""
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        z = z.astype(jnp.result_type(float))
    w = lambertw_exp(jnp.log(jnp.where(z > 0, z, 1.0)))
    return jnp.where(z > 0, w, jnp.where(z == 0, 0.0, jnp.nan))
