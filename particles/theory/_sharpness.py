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
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .. import _validate as v
from .._problem import Problem

Method = Literal["auto", "dense", "lanczos"]

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


def _lanczos(op, v0, iters: int, restarts: int, tol):
    """lambda_max of a symmetric PSD operator on arrays shaped like v0.

    Lanczos with full (twice-applied) reorthogonalisation, restarted from the Ritz vector
    until the residual ||A q - theta q|| <= tol * theta (then some eigenvalue lies within that
    distance; from a random start it is the top one) or `restarts` cycles are spent.
    """
    shape = v0.shape
    n = v0.size
    dtype = v0.dtype

    def cycle(q):
        q = q / jnp.linalg.norm(q)
        Q = jnp.zeros((iters, n), dtype)

        def body(carry, j):
            Q, q, beta_prev, scale = carry
            Q = Q.at[j].set(q)
            w = op(q.reshape(shape)).reshape(n)
            alpha = q @ w
            scale = jnp.maximum(scale, jnp.abs(alpha))
            for _ in range(2):
                w = w - Q.T @ (Q @ w)
            beta = jnp.linalg.norm(w)
            # An invariant subspace was found: continue with zeros (a decoupled zero block of T).
            ok = beta > 1e-12 * scale
            q = jnp.where(ok, w / jnp.where(ok, beta, 1.0), 0.0)
            beta = jnp.where(ok, beta, 0.0)
            return (Q, q, beta, scale), (alpha, beta)

        (Q, _, _, _), (alphas, betas) = jax.lax.scan(
            body, (Q, q, jnp.zeros((), dtype), jnp.zeros((), dtype)), jnp.arange(iters)
        )
        T = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
        theta, Y = jnp.linalg.eigh(T)
        y = Y[:, -1]
        ritz = Q.T @ y
        resid = jnp.abs(betas[-1] * y[-1])
        return theta[-1], ritz, resid

    def cond(c):
        k, _, theta, resid = c
        return (k < restarts) & (resid > tol * jnp.abs(theta))

    def step(c):
        k, q, _, _ = c
        theta, ritz, resid = cycle(q)
        return k + 1, ritz, theta, resid

    # One traced cycle (inside the loop): the first iteration always runs (resid = inf).
    init = (jnp.asarray(0), v0.reshape(n), jnp.zeros((), dtype), jnp.asarray(jnp.inf, dtype))
    _, _, theta, _ = jax.lax.while_loop(cond, step, init)
    return theta


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


def _pick(problem: Problem, method: str) -> str:
    if method not in ("auto", "dense", "lanczos"):
        v.fail("method", method, "use 'auto', 'dense' or 'lanczos'")
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
) -> Float[Array, "*T"]:
    """lambda_max of the population Hessian nabla^2 L(W) at scores S.

    **Arguments:**

    - `problem`: the [`Problem`][] (Grams suffice; embeddings are used when cheaper).
    - `S`: scores (N, M), or a stack (T, N, M) of them (e.g. `traj.scores`; vmapped).
    - `method`: `"dense"` builds the Hessian and calls `eigvalsh`: the d^2 x d^2 W-space
      matrix when E and U are known and d^2 <= N M, else the N M x N M operator of the module
      doc (same non-zero spectrum). `"lanczos"` is matrix-free (restarted Lanczos on the
      N x M operator, one Gram application per iteration, never forming a d^2 x d^2 matrix).
      `"auto"`: dense when N M <= 1024, else Lanczos.
    - `iters`: Lanczos vectors per cycle (memory iters * N * M); `restarts`: at most this
      many cycles; `tol`: stop when the Ritz residual <= tol * lambda. For a symmetric
      operator an eigenvalue lies within the residual of the Ritz value, so the default
      bounds the relative error by 1e-8 (in practice it is ~residual^2 / gap, far smaller);
      at N = M = d = 1024 one cycle of 24 products usually suffices.
    - `key`: PRNG key of the Lanczos start vector (fixed default: deterministic).

    **Returns:** lambda_max, shape () or (T,). GD with step lr is locally stable where
    lr * lambda_max / 2 < 1 (see [`stability_ratio`][]).
    """
    S = _check_scores(problem, S)
    method = _pick(problem, method)
    iters = v.check_count("iters", iters, 1)
    restarts = v.check_count("restarts", restarts, 1)
    v.check_positive("tol", tol)
    if method == "lanczos":
        key = jax.random.PRNGKey(0) if key is None else key
        v0 = jax.random.normal(key, (problem.N, problem.M), S.dtype)
    else:
        v0 = None  # the dense path needs no start vector (and drawing one compiles a kernel)
    return _sharpness(problem, S, v0, jnp.asarray(tol, S.dtype), method, min(iters, problem.N * problem.M), restarts)


@eqx.filter_jit
def _sharpness(problem, S, v0, tol, method: str, iters: int, restarts: int):
    if method == "dense":
        use_w = problem.E is not None and problem.U is not None and problem.d**2 <= problem.N * problem.M
        one = (lambda s: _dense_weights(problem, s)) if use_w else (lambda s: _dense_scores(problem, s))
    else:

        def one(s):
            return _lanczos(hessian_operator(problem, s), v0, iters, restarts, tol)

    if S.ndim == 3:
        return jax.vmap(one)(S)
    return one(S)


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
