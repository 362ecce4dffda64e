"""Sharpness: lambda_max of the population Hessian at given scores.

nabla^2 L(W) = sum_x p(x) (e_x e_x^T) kron U^T Sigma_x U, Sigma_x = diag(P_x) - P_x P_x^T the
softmax Hessian of row x (the notes' Cov_{z ~ softmax(S[x])}(u_z)). Write it A^T D A with
A: W -> S = E W^T U^T and D = blockdiag_x p(x) Sigma_x. With the factorisation
Sigma_x = C_x C_x^T, C_x = (I - P_x 1^T) diag(sqrt(P_x)), the non-zero spectrum of A^T D A
equals that of the N*M x N*M operator

    T -> C^T (G_E (C T) G_U),     (C T)[x] = sqrt(p_x) C_x T[x],

because A A^T T = G_E T G_U. So the Grams suffice (problems built with `from_grams` or
`orthogonal` need no factors), and the matrix-free path applies the Grams through
`Problem.direction` at the cost of the problem's structure (identity / factored / dense).

Where every softmax row is uniform (S = 0, the start of most runs) all Sigma_x are equal and
the Hessian is a Kronecker product: lambda_max is the product of two small top eigenvalues.
Elsewhere the matrix-free path is thick-restart Lanczos (`particles.theory._lanczos`), optionally
warm-started in float32.
"""

from __future__ import annotations

import warnings
from typing import Literal, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .. import _validate as v
from .._problem import Problem
from ._lanczos import block_lanczos

Method = Literal["auto", "dense", "lanczos", "kronecker"]
Precision = Literal["auto", "float64", "mixed"]

# `precision="auto"` runs the float32 warm start from this many score entries N M on (below,
# the products are too cheap for it to pay for its second compilation).
_MIXED_MIN = 1 << 16

# `auto` builds a dense matrix up to this size (eigvalsh of 1024 x 1024 takes ~0.2 s).
_DENSE_MAX = 1024


def _factor(S, p):
    P = jax.nn.softmax(S, axis=-1)
    return P, jnp.sqrt(P), jnp.sqrt(p)


def _apply_C(T, P, sqP, sqp):
    # sqrt(p_x) (I - P_x 1^T) diag(sqrt P_x) T[x]
    a = sqP * T
    return sqp[:, None] * (a - P * jnp.sum(a, axis=-1, keepdims=True))


def _apply_Ct(Z, P, sqP, sqp):
    # sqrt(p_x) diag(sqrt P_x) (I - 1 P_x^T) Z[x]
    return sqp[:, None] * sqP * (Z - jnp.sum(P * Z, axis=-1, keepdims=True))


def hessian_operator(problem: Problem, S: Float[Array, "N M"]):
    """The symmetric PSD operator T -> C^T(G_E (C T) G_U) on N x M matrices (see module doc).

    Its spectrum is the non-zero spectrum of nabla^2 L(W) at scores S, padded with zeros.
    """
    P, sqP, sqp = _factor(S, problem.p)

    def op(T):
        return _apply_Ct(problem.direction(_apply_C(T, P, sqP, sqp)), P, sqP, sqp)

    return op


def _dense_scores(problem: Problem, S):
    P, sqP, sqp = _factor(S, problem.p)
    M = problem.M
    eye = jnp.eye(M, dtype=S.dtype)
    # Cb[x] = sqrt(p_x) C_x, shape (N, M, M)
    Cb = sqp[:, None, None] * (eye[None] - P[:, :, None]) * sqP[:, None, :]
    K = jnp.einsum("xzy,xX,zw,Xwv->xyXv", Cb, problem.G_E, problem.G_U, Cb)
    n = problem.N * M
    K = K.reshape(n, n)
    return jnp.linalg.eigvalsh(0.5 * (K + K.T))[-1]


def _dense_weights(problem: Problem, S):
    P = jax.nn.softmax(S, axis=-1)
    E, U, p = problem.E, problem.U, problem.p
    UP = P @ U  # rows U^T P_x
    # C[x] = U^T Sigma_x U, shape (N, d, d)
    C = jnp.einsum("xy,ya,yb->xab", P, U, U) - UP[:, :, None] * UP[:, None, :]
    d = E.shape[1]
    H = jnp.einsum("x,xi,xj,xab->aibj", p, E, E, C).reshape(d * d, d * d)
    return jnp.linalg.eigvalsh(0.5 * (H + H.T))[-1]


# ------------------------------------------------------------------ uniform softmax rows
def _top(K):
    return jnp.linalg.eigvalsh(0.5 * (K + K.T))[-1]


def _kronecker(problem: Problem, dtype):
    """lambda_max where every softmax row is uniform: lambda_max(A) lambda_max(B).

    With P_x = 1/M for every x, Sigma_x = I/M - 11^T/M^2 =: C for all x, and
    nabla^2 L = (sum_x p_x e_x e_x^T) kron (U^T C U) = A kron B: the eigenvalues of a
    Kronecker product of PSD matrices are the products of theirs. A has the non-zero spectrum
    of diag(sqrt p) G_E diag(sqrt p) (N x N) or E^T diag(p) E (d x d); B that of
    Pi G_U Pi / M with Pi = I - 11^T/M (M x M) or U^T Pi U / M (d x d): the smaller is used.
    """
    p, N, M = problem.p.astype(dtype), problem.N, problem.M
    if problem.structure_E == "identity":
        a = jnp.max(p)
    elif problem.E is not None and problem.d < N:
        E = problem.E.astype(dtype)
        a = _top((E * p[:, None]).T @ E)
    else:
        sq = jnp.sqrt(p)
        a = _top(sq[:, None] * problem.G_E.astype(dtype) * sq[None, :])
    if M == 1:
        return jnp.zeros((), dtype)
    if problem.structure_U == "identity":
        bb = jnp.asarray(1.0 / M, dtype)
    elif problem.U is not None and problem.d < M:
        U = problem.U.astype(dtype)
        Uc = U - jnp.mean(U, axis=0, keepdims=True)  # Pi U
        bb = _top(Uc.T @ Uc) / M
    else:
        G = problem.G_U.astype(dtype)
        Gc = G - jnp.mean(G, axis=0, keepdims=True)
        Gc = Gc - jnp.mean(Gc, axis=1, keepdims=True)  # Pi G_U Pi
        bb = _top(Gc) / M
    return a * bb


def _uniform_rows(S) -> Optional[np.ndarray]:
    """Per score matrix, whether every row is constant (uniform softmax); None under tracing."""
    if not v.is_concrete(S):
        return None
    s = np.asarray(S)
    return np.all(s.max(axis=-1) == s.min(axis=-1), axis=-1)


def _check_scores(problem: Problem, S):
    S = jnp.asarray(S)
    if S.ndim not in (2, 3) or S.shape[-2:] != (problem.N, problem.M):
        raise ValueError(
            f"S has shape {S.shape}; expected scores ({problem.N}, {problem.M}) or a stack (T, {problem.N}, {problem.M})."
        )
    v.check_finite("S", S)
    if not jnp.issubdtype(S.dtype, jnp.floating):
        S = S.astype(problem.dtype)
    return S


_METHODS = ("auto", "dense", "lanczos", "kronecker")


def _pick(problem: Problem, method: str) -> str:
    if method != "auto":
        return method
    return "dense" if problem.N * problem.M <= _DENSE_MAX else "lanczos"


def sharpness(
    problem: Problem,
    S: Float[ArrayLike, "*T N M"],
    *,
    method: Method = "auto",
    iters: int = 24,
    restarts: int = 8,
    tol: float = 1e-8,
    key=None,
    block: int = 1,
    precision: Precision = "auto",
    return_info: bool = False,
):
    """lambda_max of the population Hessian nabla^2 L(W) at scores S.

    **Arguments:**

    - `problem`: the [`Problem`][] (Grams suffice; embeddings are used when cheaper).
    - `S`: scores (N, M), or a stack (T, N, M) of them (e.g. `traj.scores`; vmapped).
    - `method`:
        - `"kronecker"`: only where every softmax row is uniform (each S[x] constant, e.g.
          S = 0): the Hessian is (sum_x p_x e_x e_x^T) kron U^T (I/M - 11^T/M^2) U and
          lambda_max is the product of the two factors' top eigenvalues (two eigvalsh of size
          min(N, d) and min(M, d)); exact to round-off.
        - `"dense"` builds the Hessian and calls `eigvalsh`: the d^2 x d^2 W-space matrix when
          E and U are known and d^2 <= N M, else the N M x N M operator of the module doc.
        - `"lanczos"` is matrix-free: thick-restart Lanczos on the N x M operator (blocks of
          `block` vectors), one Gram application per Hessian-vector product, never forming a
          d^2 x d^2 matrix; jit-compiled, the same code on CPU and GPU.
        - `"auto"`: kronecker for the score matrices whose rows are uniform (checked
          eagerly; under `jit` this is skipped), then dense when N M <= 1024, else lanczos.
    - `iters`: Lanczos basis size m (memory m * N * M numbers); `restarts`: at most this many
      fillings of the basis (each restart keeps the top m/2 Ritz vectors); `block`: vectors
      per block b (at most m // 4, so that a basis holds four blocks). Blocks resolve
      clusters of up to b eigenvalues at once but raise the polynomial degree b times slower:
      at N = M = d = 1024 b = 4 took 3.5-4x the products of b = 1 (BENCHMARKS.md), so b = 1
      is the default.
    - `tol`: stop when the estimated relative error of lambda_max, min(r, r^2/gap) / lambda
      (r the Ritz residual, gap the distance to the next Ritz value), is <= tol. Like every
      Krylov stopping rule it cannot see an eigenvalue the basis has not found yet: a cluster
      narrower than r around lambda_max makes the r^2/gap part optimistic.
    - `key`: PRNG key or integer seed of the Lanczos start block (default: seed 0,
      deterministic).
    - `precision`: `"float64"`; `"mixed"`: float32 products find the top Ritz vector (to an
      estimated 1e-7), then float64 Lanczos from it measures lambda and its residual and
      continues until its own estimate meets `tol` (float32 products cost half the time and
      bytes on CPU); `"auto"`: mixed for float64 scores with N M >= 65536, else float64.
    - `return_info`: also return a dict with, per score matrix, `hvps` (float64
      Hessian-vector products), `hvps32` (float32 ones), `cycles` (basis fillings), `sweeps`
      (full reorthogonalisations), `error` (the estimate above), `gap` and `converged`
      (zeros / True for the exact methods).

    **Returns:** lambda_max, shape () or (T,) (and the info dict). GD with step lr is locally
    stable where lr * lambda_max / 2 < 1 (see [`stability_ratio`][]). A Lanczos run that
    stops at `restarts` without reaching `tol` warns (`RuntimeWarning`).

    >>> import jax.numpy as jnp, particles
    >>> problem = particles.two_particles(corr=0.5, p1=0.75)
    >>> round(float(sharpness(problem, jnp.zeros((2, 2)))), 6)  # (1 + sqrt(0.25 + 0.1875)) / 4
    0.415359
    """
    S = _check_scores(problem, S)
    if method not in _METHODS:
        v.fail("method", method, "use 'auto', 'dense', 'lanczos' or 'kronecker'")
    iters = v.check_count("iters", iters, 1)
    restarts = v.check_count("restarts", restarts, 1)
    block = v.check_count("block", block, 1)
    v.check_positive("tol", tol)
    if key is not None:
        key = v.prng_key("key", key)
    if precision not in ("auto", "float64", "mixed"):
        v.fail("precision", precision, "use 'auto', 'float64' or 'mixed'")
    if precision == "auto":
        big = problem.N * problem.M >= _MIXED_MIN and S.dtype == jnp.float64
        precision = "mixed" if big else "float64"
    uniform = _uniform_rows(S) if method in ("auto", "kronecker") else None
    if method == "kronecker" and (uniform is None or not np.all(uniform)):
        v.fail("method", method, "it needs uniform softmax rows (every S[x] constant, e.g. S = 0) "
                                 "and concrete scores; use 'auto'")
    Ss = S if S.ndim == 3 else S[None]
    T = Ss.shape[0]
    uni = np.zeros(T, bool) if uniform is None else np.atleast_1d(uniform)
    info = dict(hvps=np.zeros(T, int), hvps32=np.zeros(T, int), cycles=np.zeros(T, int), sweeps=np.zeros(T, int),
                error=np.zeros(T), gap=np.zeros(T), converged=np.ones(T, bool))
    lam = None
    if uni.any():
        # Every uniform row gives the same Sigma_x: one value for all of them.
        lam = jnp.broadcast_to(_kronecker_jit(problem, S.dtype), (T,))
    rest = np.flatnonzero(~uni)
    if rest.size:
        general = _pick(problem, method)
        n = problem.N * problem.M
        if general == "lanczos" and n < 4:
            general = "dense"  # no room for a Krylov basis; the matrix is at most 3 x 3
        m = min(iters, n)
        b = max(1, min(block, m // 4))
        if precision == "mixed" and m < 8:
            m = min(8, n)
        X0 = None  # the dense path needs no start vector (and drawing one compiles a kernel)
        if general == "lanczos":
            X0 = jax.random.normal(jax.random.key(0) if key is None else key, (b, problem.N, problem.M), S.dtype)
        sub = Ss if rest.size == T else Ss[rest]
        got, inf = _sharpness(problem, sub, X0, jnp.asarray(tol, S.dtype), jnp.asarray(restarts), general, m,
                              max(1, m // 2), precision == "mixed")
        lam = got if lam is None else lam.at[rest].set(got)
        if general == "lanczos" and not v.is_concrete(inf):  # under the caller's jit: no checks
            info = inf
        elif general == "lanczos":
            inf = jax.tree_util.tree_map(np.asarray, inf)
            for k_, a in info.items():
                a[rest] = inf[k_]
            if not np.all(inf["converged"]):
                worst = float(np.max(inf["error"]))
                warnings.warn(f"sharpness: Lanczos stopped after restarts={restarts} cycles with an estimated "
                              f"relative error {worst:.1e} > tol={tol:g}; raise restarts or iters.",
                              RuntimeWarning, stacklevel=2)
    if S.ndim == 2:
        lam = lam.reshape(())
        info = {k_: a[0] for k_, a in info.items()}
    return (lam, info) if return_info else lam


_kronecker_jit = eqx.filter_jit(_kronecker)


def _as(tree, dtype):
    """The problem with every float array cast to `dtype` (no PrecisionWarning: internal)."""
    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


@eqx.filter_jit
def _sharpness(problem, S, X0, tol, cycles, method: str, m: int, keep: int, mixed: bool):
    """Dense or Lanczos on a stack (T, N, M) of score matrices; returns (lambda (T,), info).
    `tol` and `cycles` are traced: changing them does not recompile."""
    if method == "dense":
        use_w = problem.E is not None and problem.U is not None and problem.d**2 <= problem.N * problem.M
        one = (lambda s: _dense_weights(problem, s)) if use_w else (lambda s: _dense_scores(problem, s))
        return jax.vmap(one)(S), None

    def one(s):
        if not mixed:
            theta, info, _ = block_lanczos(hessian_operator(problem, s), X0, m, keep, cycles, tol)
            return theta, dict(info, hvps32=jnp.zeros_like(info["hvps"]))
        # float32 products find the top Ritz pair to what float32 can certify (1e-7, about
        # its rounding) at half the bytes and time of float64; float64
        # thick-restart Lanczos from that Ritz vector then measures theta and its residual
        # itself, and continues until its own estimate (with the float32 Ritz gap as a cap on
        # the gap) meets tol -- usually after a few products.
        f32 = jnp.float32
        tol32 = jnp.maximum(tol, 1e-7).astype(f32)
        _, info32, X = block_lanczos(hessian_operator(_as(problem, f32), s.astype(f32)), X0.astype(f32),
                                      m, keep, cycles, tol32)
        X = X.astype(s.dtype).reshape((1,) + s.shape)
        theta, info, _ = block_lanczos(hessian_operator(problem, s), X, m, keep, cycles, tol,
                                        gap0=info32["gap"].astype(s.dtype))
        return theta, dict(info, hvps32=info32["hvps"])

    if S.shape[0] == 1:  # a batched while_loop runs both sides of every cond: avoid it for one matrix
        return jax.tree_util.tree_map(lambda a: a[None], one(S[0]))
    return jax.vmap(one)(S)


def sharpness_bound(problem: Problem) -> float:
    """An upper bound on the sharpness at every S: λ_max(Eᵀ diag(p) E) · λ_max(G_U) / 2.

    The Hessian in W is Σ_x p_x (e_x e_xᵀ) ⊗ Uᵀ Σ_x U, and Σ_x, the softmax covariance of row
    x, has λ_max ≤ 1/2 (two classes at probability 1/2 each), so Uᵀ Σ_x U ≤ λ_max(G_U)/2 · I
    bounds every term. The gradient flow uses it to judge how stiff a horizon is
    ([`particles.flow`][]).

    **Arguments:**

    - `problem`: a [`Problem`][particles.Problem] (its embeddings, or its Grams
      λ_max(diag(√p) G_E diag(√p)) and λ_max(G_U) where it has none).

    **Returns:** the bound, a Python float (computed in numpy, eagerly).

    >>> import particles
    >>> round(sharpness_bound(particles.orthogonal([0.5, 0.25, 0.25])), 12)  # max p · 1 / 2
    0.25
    """
    p = np.asarray(problem.p, np.float64)
    if problem.E is not None and problem.U is not None:  # d x d matrices
        E, U = np.asarray(problem.E, np.float64), np.asarray(problem.U, np.float64)
        a, b = (E * p[:, None]).T @ E, U.T @ U
    else:  # the same non-zero spectra from the Grams (N x N, M x M)
        sq = np.sqrt(p)
        a, b = sq[:, None] * np.asarray(problem.G_E, np.float64) * sq[None, :], np.asarray(problem.G_U, np.float64)
    return float(np.linalg.eigvalsh(a)[-1] * np.linalg.eigvalsh(b)[-1] / 2)


def stability_ratio(
    problem: Problem, S: Float[ArrayLike, "*T N M"], lr: Float[ArrayLike, ""], **kw
) -> Float[Array, "*T"]:
    """lr * lambda_max / 2 at scores S: GD is locally stable where this is < 1.

    Keyword arguments go to [`sharpness`][].
    """
    v.check_positive("lr", lr)
    return jnp.asarray(lr) * sharpness(problem, S, **kw) / 2.0


def two_class_sharpness(problem: Problem, S: Float[ArrayLike, "*T N 2"]) -> Float[Array, "*T"]:
    """lambda_max for two classes: |u_0 - u_1|^2 lambda_max(sum_x p_x s_x (1 - s_x) e_x e_x^T).

    With M = 2, Sigma_x = s(1 - s) (1, -1)(1, -1)^T, so the N x M operator collapses to the
    N x N matrix |u_0 - u_1|^2 diag(sqrt w) G_E diag(sqrt w), w_x = p_x s_x (1 - s_x); with
    U = I this is the notes' 2 lambda_max(sum_x p_x s_x (1 - s_x) e_x e_x^T).
    """
    if problem.M != 2:
        raise ValueError(f"problem has M={problem.M} classes; two_class_sharpness needs M = 2 (use sharpness).")
    S = _check_scores(problem, S)
    G = problem.G_U
    gu = G[0, 0] + G[1, 1] - 2.0 * G[0, 1]

    return _two_class(problem, S, gu)


@eqx.filter_jit
def _two_class(problem, S, gu):
    def one(s):
        P = jax.nn.softmax(s, axis=-1)
        w = jnp.sqrt(problem.p * P[:, 0] * P[:, 1])
        K = w[:, None] * problem.G_E * w[None, :]
        return gu * jnp.linalg.eigvalsh(K)[-1]

    return jax.vmap(one)(S) if S.ndim == 3 else one(S)
