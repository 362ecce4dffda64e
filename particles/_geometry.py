"""Named geometries of the paper: orthogonal, two particles, equicorrelated, random sphere;
and Zipf frequencies."""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from . import _validate as v
from ._problem import Problem, _frequencies, _targets, default_dtype


def zipf(N: int, a: float = 1.0, *, dtype=None) -> Float[Array, " N"]:
    """Zipf frequencies p(x) ∝ x^(−a) for x = 1..N (the paper's law).

    **Returns:** p, shape (N,), summing to 1.

    >>> [round(p, 4) for p in zipf(3, 1.0).tolist()]
    [0.5455, 0.2727, 0.1818]
    """
    return frequencies(N, zipf=a, dtype=dtype)


def orthogonal(p: Float[ArrayLike, " N"], M: Optional[int] = None, targets=None, *, dtype=None) -> Problem:
    """Orthonormal embeddings: G_E = I, G_U = I, f*(x) = x mod M (M defaults to N).

    Each GD step costs O(N M): the Grams are applied as identities. The factors E, U are not
    stored (they would be identities of size max(N, M)).

    **Arguments:** `p` frequencies (N,); `M` classes (default N); `targets` f*(x) (N,) or
    q(y|x) (N, M) (default x mod M); `dtype` (float64 by default).

    **Returns:** a [`Problem`][] with identity structures and S0 = 0.

    >>> problem = orthogonal([0.5, 0.3, 0.2], M=2)
    >>> problem.N, problem.M, problem.targets.tolist(), problem.structure_E
    (3, 2, [0, 1, 0], 'identity')
    """
    dtype = default_dtype() if dtype is None else dtype
    if np.ndim(p) != 1:
        raise ValueError(f"p has shape {np.shape(p)}; expected a vector (N,).")
    N = np.shape(p)[0]
    M = N if M is None else v.check_count("M", M, 1)
    targets = np.arange(N) % M if targets is None else targets
    return Problem(
        p=_frequencies(p, N, dtype),
        Y=_targets(targets, N, M, dtype),
        G_E=jnp.eye(N, dtype=dtype),
        G_U=jnp.eye(M, dtype=dtype),
        S0=jnp.zeros((N, M), dtype),
        structure_E="identity",
        structure_U="identity",
    )


def two_particles(corr: float | Array, p1: float | Array, *, dtype=None) -> Problem:
    """The paper's two-particle system (N = M = d = 2).

    e_1 = (1, 0), e_2 = (corr, sqrt(1 - corr^2)), U = I, f*(x) = x, p = (p1, 1 - p1), W0 = 0.
    Works under `jit` and `vmap` over `corr` and `p1` (traced values are not range-checked).

    **Arguments:** `corr` = ⟨e_1, e_2⟩ in [−1, 1]; `p1` in [0, 1]; `dtype`.

    **Returns:** a [`Problem`][] with N = M = d = 2.

    >>> problem = two_particles(corr=0.5, p1=0.75)
    >>> problem.G_E.tolist(), problem.p.tolist()
    ([[1.0, 0.5], [0.5, 1.0]], [0.75, 0.25])
    """
    dtype = default_dtype() if dtype is None else dtype
    v.check_in_range("corr", corr, -1.0, 1.0)
    v.check_in_range("p1", p1, 0.0, 1.0)
    return _two_particles(jnp.asarray(corr, dtype), jnp.asarray(p1, dtype))


@jax.jit  # one compiled call (eagerly, each of a dozen operations would compile its own)
def _two_particles(corr, p1) -> Problem:
    dtype = corr.dtype
    E = jnp.stack([jnp.array([1.0, 0.0], dtype), jnp.stack([corr, jnp.sqrt(jnp.maximum(1 - corr**2, 0))])])
    U = jnp.eye(2, dtype=dtype)
    return Problem(
        p=jnp.stack([p1, 1 - p1]),
        Y=jnp.eye(2, dtype=dtype),
        # Exactly (1, corr; corr, 1): E Eᵀ rounds corr² + (1 − corr²) to 1 − 1e-16.
        G_E=jnp.stack([jnp.stack([jnp.ones_like(corr), corr]), jnp.stack([corr, jnp.ones_like(corr)])]),
        G_U=U,
        S0=jnp.zeros((2, 2), dtype),
        E=E,
        U=U,
        W0=jnp.zeros((2, 2), dtype),
        structure_E="dense",
        structure_U="identity",
    )


def equicorrelated(
    n: int,
    corr: float | Array,
    p: Optional[ArrayLike] = None,
    m: Optional[int] = None,
    *,
    d: Optional[int] = None,
    targets=None,
    dtype=None,
) -> Problem:
    """n unit inputs with pairwise <e_x, e_x'> = corr, orthonormal outputs, f*(x) = x mod m.

    The inputs are the rows of the symmetric square root of G_E = (1 - corr) I + corr 11^T,
    zero-padded to R^d (d defaults to max(n, m)); they exist for corr in [-1/(n-1), 1].
    `p` defaults to Zipf(1), `m` to n, `targets` to x mod m. U is the identity of size d cut
    to m rows. Works under `jit` and `vmap` over `corr` (e.g. a sweep axis).

    **Returns:** a [`Problem`][] with embeddings E (n, d), U (m, d) and S0 = 0.

    >>> problem = equicorrelated(3, 0.25, d=5)
    >>> problem.E.shape, [round(g, 6) for g in problem.G_E[0].tolist()]
    ((3, 5), [1.0, 0.25, 0.25])
    """
    n = v.check_count("n", n, 1)
    m = n if m is None else v.check_count("m", m, 1)
    dtype = default_dtype() if dtype is None else dtype
    lo = -1.0 / (n - 1) if n > 1 else -1.0
    v.check_in_range("corr", corr, lo, 1.0)
    p = zipf(n, 1.0, dtype=dtype) if p is None else p
    d = max(n, m) if d is None else v.check_count("d", d, max(n, m))
    targets = np.arange(n) % m if targets is None else targets
    E, G_E, U, G_U, S0, W0 = _equicorrelated_geometry(jnp.asarray(corr, dtype), n, m, d)
    return Problem(
        p=_frequencies(p, n, dtype),
        Y=_targets(targets, n, m, dtype),
        G_E=G_E,
        G_U=G_U,
        S0=S0,
        E=E,
        U=U,
        W0=W0,
        structure_E="dense",
        structure_U="identity",
    )


@functools.partial(jax.jit, static_argnums=(1, 2, 3))  # one compiled call, also under vmap
def _equicorrelated_geometry(c, n: int, m: int, d: int):
    """E (rows of the symmetric square root a I + b 11ᵀ of G_E = (1 − c) I + c 11ᵀ, padded
    to d columns), G_E, U, G_U, S0 and W0."""
    a = jnp.sqrt(jnp.maximum(1 - c, 0))
    b = (jnp.sqrt(jnp.maximum(1 - c + n * c, 0)) - a) / n
    eye, ones = jnp.eye(n, dtype=c.dtype), jnp.ones((n, n), c.dtype)
    E = jnp.concatenate([a * eye + b * ones, jnp.zeros((n, d - n), c.dtype)], axis=1)
    return (E, (1 - c) * eye + c * ones, jnp.eye(m, d, dtype=c.dtype), jnp.eye(m, dtype=c.dtype),
            jnp.zeros((n, m), c.dtype), jnp.zeros((d, d), c.dtype))


def random_sphere(
    key: PRNGKeyArray | int,
    N: int,
    M: int,
    d: int,
    p: Optional[ArrayLike] = None,
    targets=None,
    *,
    dtype=None,
) -> Problem:
    """Gaussian embeddings normalised to the unit sphere, as in the paper.

    **Arguments:**

    - `key`: a JAX PRNG key or an integer seed; E uses the first half of
      `jax.random.split(key)`, U the second.
    - `N`, `M`, `d`: inputs, outputs, embedding dimension.
    - `p`: frequencies (N,); Zipf(1) when omitted.
    - `targets`: f*(x) (N,) or q(y|x) (N, M); x mod M when omitted.

    **Returns:** a [`Problem`][] with unit-norm rows E (N, d) and U (M, d).

    >>> problem = random_sphere(0, 20, 4, 5)  # d < N: the memory is too small
    >>> problem.E.shape, round(float(abs(problem.G_E.diagonal() - 1).max()), 12)
    ((20, 5), 0.0)
    """
    N = v.check_count("N", N, 1)
    M = v.check_count("M", M, 1)
    d = v.check_count("d", d, 1)
    dtype = default_dtype() if dtype is None else dtype
    kE, kU = jax.random.split(v.prng_key("key", key))
    E = jax.random.normal(kE, (N, d), dtype)
    U = jax.random.normal(kU, (M, d), dtype)
    E = E / jnp.linalg.norm(E, axis=1, keepdims=True)
    U = U / jnp.linalg.norm(U, axis=1, keepdims=True)
    p = zipf(N, 1.0, dtype=dtype) if p is None else p
    targets = np.arange(N) % M if targets is None else targets
    return Problem.from_embeddings(E, U, p, targets, dtype=dtype)


def frequencies(n: int, *, p1=None, log_odds=None, zipf=None, dtype=None) -> Float[Array, " n"]:
    """p for `n` inputs from one of three laws (works on traced values, e.g. sweep axes).

    - `p1`: input 0 has p1, the others share 1 − p1 equally;
    - `log_odds`: p ∝ (e^log_odds, 1, …, 1), so log(p_0 / p_1) = log_odds;
    - `zipf`: p(x) ∝ (x + 1)^(−zipf);
    - none of them: Zipf(1).

    **Returns:** p, shape (n,), summing to 1.

    >>> frequencies(2, log_odds=0.0).tolist()
    [0.5, 0.5]
    >>> frequencies(3, p1=0.5).tolist()
    [0.5, 0.25, 0.25]
    """
    n = v.check_count("n", n, 1)
    given = [k for k, x in (("p1", p1), ("log_odds", log_odds), ("zipf", zipf)) if x is not None]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)} are all given: they set the same frequencies; give one.")
    dtype = jnp.dtype(default_dtype() if dtype is None else dtype)
    if p1 is not None:
        v.check_in_range("p1", p1, 0.0, 1.0)
        return _law(n, "p1", jnp.asarray(p1, dtype))
    if log_odds is not None:
        v.check_finite("log_odds", log_odds)
        return _law(n, "log_odds", jnp.asarray(log_odds, dtype))
    zipf = 1.0 if zipf is None else zipf
    v.check_finite("zipf", zipf)
    return _law(n, "zipf", jnp.asarray(zipf, dtype))


# One compiled call per law and size (called eagerly, each operation would compile its own).
@functools.partial(jax.jit, static_argnums=(0, 1))
def _law(n: int, kind: str, x):
    if kind == "p1":
        return jnp.concatenate([x[None], jnp.broadcast_to((1 - x) / max(n - 1, 1), (n - 1,))])
    if kind == "log_odds":
        w = jnp.concatenate([jnp.exp(x)[None], jnp.ones(n - 1, x.dtype)])
    else:
        w = jnp.arange(1, n + 1, dtype=x.dtype) ** (-x)
    return w / w.sum()
