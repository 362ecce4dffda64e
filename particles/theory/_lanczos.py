"""Block thick-restart Lanczos for lambda_max of a symmetric PSD operator, matrix-free and
jit-compiled (the same code on CPU and GPU); `particles.theory.sharpness` uses it away from
uniform softmax rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _ritz(H, j):
    """Eigen-decomposition of the active j x j block of H (ascending). Inactive rows get a
    diagonal below the PSD spectrum, so the top Ritz pairs are the active ones."""
    m = H.shape[0]
    active = jnp.arange(m) < j
    shift = 1.0 + jnp.max(jnp.abs(H))
    Hs = jnp.where(active[:, None] & active[None, :], 0.5 * (H + H.T), 0.0)
    return jnp.linalg.eigh(Hs - jnp.diag(jnp.where(active, 0.0, shift)))


def _gram_schmidt(Q, V, keep_rows=None, weak=None):
    """Rows of Q made orthonormal to the rows of V and to each other, one at a time (twice
    each); a row with nothing left becomes 0 (a deflated direction), so it cannot bend the
    others. With `weak` given, only those rows are rebuilt (from Q); the others are kept from
    `keep_rows`."""
    rows = []
    for i in range(Q.shape[0]):
        f = Q[i]
        scale = jnp.linalg.norm(f)
        for _ in range(2):
            f = f - (V @ f) @ V
            for g in rows:
                f = f - (g @ f) * g
        nf = jnp.linalg.norm(f)
        ok = nf > 1e-8 * scale
        new = jnp.where(ok, f / jnp.where(ok, nf, 1.0), 0.0)
        if weak is not None:
            new = jnp.where(weak[i], new, keep_rows[i])
        rows.append(new)
    return jnp.stack(rows)


def _project(V, W):
    """W minus its components along the rows of V (orthonormal), and those components C."""
    C = V @ W.T
    # sum_i C[i] V[i] as a reduction, not the product C^T V: inside the loop, where V is
    # also updated in place, XLA:CPU copies V into another layout for that product on
    # every step (measured 3x slower at N M = 10^6).
    return W - jnp.sum(C.T[:, :, None] * V[None], axis=1), C


def _reorthogonalise(V, W, C):
    """Classical Gram-Schmidt of the block W against the whole basis V, twice where once
    removed more than 1 - 1/sqrt(2) of the norm (the DGKS test): one pass leaves components
    of about eps ||W_before|| / ||W_after|| along V, a second one eps. Adds the removed
    components to C."""
    before = jnp.linalg.norm(W)
    W, C1 = _project(V, W)

    def again(W, C):
        W, C2 = _project(V, W)
        return W, C + C2

    return jax.lax.cond(jnp.linalg.norm(W) < 0.7071 * before, again, lambda W, C: (W, C), W, C + C1)


def block_lanczos(op, X0, m: int, keep: int, cycles, tol, gap0=None, nvec: int = 1):
    """lambda_max of a symmetric PSD operator on arrays shaped like X0[0]: block thick-restart
    Lanczos (a symmetric block Krylov-Schur method).

    X0 holds b start vectors. Each expansion applies the operator to a block of b orthonormal
    vectors, orthogonalises the result against the basis and QR-factors the remainder into
    the next block. When the next block would overflow the m-vector basis, the basis is
    replaced by its top `keep` Ritz vectors (a thick restart: a converging cluster is kept,
    not thrown away) and expansion continues from the residual block, whose couplings to the
    kept vectors come out of the next orthogonalisation.

    Orthogonalisation: the three-term recurrence's coefficients (the current and previous
    blocks) are removed from those rows alone at every step. A classical Gram-Schmidt sweep
    over the whole basis (repeated when it removed more than 1 - 1/sqrt(2) of the norm, the
    DGKS test) runs only where it matters: on the first step after a restart, whose residual
    block couples to every kept Ritz vector, and once some Ritz residual r_i is below
    10 sqrt(eps) theta_1. Before that, Paige's theory bounds the loss of orthogonality along
    Ritz vector i by about eps ||A|| / r_i < sqrt(eps) / 10, and semi-orthogonality keeps
    the Ritz values as accurate as full reorthogonalisation does (Simon, 1984); a sweep reads
    the whole m-vector basis twice, which at N M ~ 10^6 costs as much as the product itself.
    At each restart the kept vectors are re-orthonormalised, so the loss does not compound
    from cycle to cycle.

    Stops when the estimated relative error of the top Ritz value theta_1,
    min(r, r^2 / gap) / theta_1 with r its residual norm and gap = theta_1 - theta_2 (or
    `gap0` if smaller), is <= tol: r bounds the distance to some eigenvalue, r^2 / gap is the
    Kato-Temple bound with the Ritz gap standing in for the true one. Or after `cycles`
    fillings of the basis.

    Returns theta_1, an info dict (Hessian-vector products, cycles, sweeps, error estimate,
    converged, the Ritz gap) and the top `nvec` <= keep Ritz vectors (nvec, n), largest first.
    """
    b = X0.shape[0]
    shape = X0.shape[1:]
    n = X0[0].size
    dtype = X0.dtype
    tiny = jnp.finfo(dtype).tiny
    loose = 10 * float(np.sqrt(jnp.finfo(dtype).eps))  # 1.5e-7 in float64, 3.5e-3 in float32

    def op_block(Q):
        return jax.vmap(lambda q: op(q.reshape(shape)).reshape(n))(Q)

    def expand(V, H, Q, j, sweep: bool):
        V = jax.lax.dynamic_update_slice(V, Q, (j, 0))
        W = op_block(Q)
        lo = jnp.maximum(j - b, 0)
        W, CL = _project(jax.lax.dynamic_slice(V, (lo, 0), (2 * b, n)), W)
        C = jax.lax.dynamic_update_slice(jnp.zeros((m, b), dtype), CL, (lo, 0))
        if sweep:
            W, C = _reorthogonalise(V, W, C)
        H = jax.lax.dynamic_update_slice(H, C, (0, j))
        H = jax.lax.dynamic_update_slice(H, C.T, (j, 0))
        if b == 1:
            # beta = 0 means the Krylov space is invariant, so the residual is 0 and the check
            # stops the loop before the (zero) next vector is used.
            R = jnp.linalg.norm(W, axis=1, keepdims=True)
            return V, H, W / jnp.where(R > 0, R, 1.0), R
        Qn, R = jnp.linalg.qr(W.T)
        Qn = Qn.T
        # A deflated block (the Krylov space became invariant in some direction) leaves QR's
        # filler columns, which are not orthogonal to the basis: project them out, and drop
        # the ones that have nothing left (the space is exhausted there).
        dg = jnp.abs(jnp.diag(R))
        scale = jnp.maximum(jnp.max(dg), jnp.max(jnp.abs(H)))
        weak = dg <= 1e-10 * scale
        Qn = jax.lax.cond(jnp.any(weak), lambda Qn: _gram_schmidt(Qn, V, Qn, weak), lambda Qn: Qn, Qn)
        return V, H, Qn, R

    def step(c, sweep: bool):
        V, H, Q, R = expand(c["V"], c["H"], c["Q"], c["j"], sweep)
        j = c["j"] + b
        theta, Y = _ritz(H, j)
        t1 = theta[-1]
        last = jax.lax.dynamic_slice(Y[:, -1], (j - b,), (b,))
        r = jnp.linalg.norm(R @ last)
        gap = jnp.where(j >= 2, t1 - theta[-2], 0.0)
        if gap0 is not None:
            gap = jnp.minimum(gap, gap0)
        err = jnp.where(gap > 0, jnp.minimum(r, r * r / jnp.where(gap > 0, gap, 1.0)), r)
        # The smallest residual of any active Ritz pair: orthogonality is lost along converged
        # Ritz vectors, whichever end of the spectrum they sit at.
        rs = jnp.linalg.norm(R @ jax.lax.dynamic_slice(Y, (j - b, 0), (b, m)), axis=0)
        rmin = jnp.min(jnp.where(jnp.arange(m) >= m - j, rs, jnp.inf))
        scale = jnp.maximum(jnp.abs(t1), tiny)
        return dict(c, V=V, H=H, Q=Q, j=j, hvps=c["hvps"] + b, sweeps=c["sweeps"] + int(sweep), theta=t1,
                    err=err / scale, rmin=rmin / scale, gap=gap, done=err <= tol * jnp.abs(t1),
                    theta_keep=theta[m - keep:], Y_keep=Y[:, m - keep:])

    def restart(V, Q, theta_keep, Y_keep):
        """The top Ritz vectors, re-orthonormalised, as the new basis; Q orthogonal to them.

        Cholesky QR with the Gram matrix taken on the small side, Y^T (V V^T) Y: the kept
        vectors are orthonormal to rounding, so it is I + O(eps), and L^-1 Y^T V is one
        pass over V. Without it, each cycle inherits the last one's loss of orthogonality
        and multiplies it.
        """
        G = Y_keep.T @ (V @ V.T) @ Y_keep
        # After an early stop fewer than `keep` Ritz vectors are active; the others are empty
        # rows (Gram diagonal 0, not 1): leave them empty rather than divide by zero.
        G = 0.5 * (G + G.T) + jnp.diag(jnp.where(jnp.diag(G) < 0.5, 1.0, 0.0))
        L = jnp.linalg.cholesky(G)
        T = jax.scipy.linalg.solve_triangular(L, Y_keep.T, lower=True)  # (keep, m)
        Vk = T @ V
        Q = _gram_schmidt(Q, Vk)
        V = jnp.zeros_like(V).at[:keep].set(Vk)
        H = jnp.zeros((m, m), dtype).at[jnp.arange(keep), jnp.arange(keep)].set(theta_keep)
        return V, H, Q, Vk

    def room(c):
        return (~c["done"]) & (c["j"] + b <= m)

    def cycle(c):
        # Loops, not `lax.cond`s, choose between sweeping and not: a cond whose operands hold
        # the basis copies it (measured: 2-3x the cost of a step at N M = 10^6).
        # A sweep after the (re)start: the residual block couples to every kept Ritz vector.
        c = step(c, True)
        # Local steps while every Ritz residual is above 10 sqrt(eps) theta: the loss of
        # orthogonality, eps ||A|| / r (Paige), stays below sqrt(eps) / 10, the
        # semi-orthogonality that keeps Ritz values as accurate as full reorthogonalisation.
        c = jax.lax.while_loop(lambda c: room(c) & (c["rmin"] >= loose), lambda c: step(c, False), c)
        c = jax.lax.while_loop(room, lambda c: step(c, True), c)
        V, H, Q, Vk = restart(c["V"], c["Q"], c["theta_keep"], c["Y_keep"])
        return dict(c, V=V, H=H, Q=Q, j=jnp.asarray(keep), cycle=c["cycle"] + 1, top=Vk[keep - nvec:][::-1])

    Q0 = jnp.linalg.qr(X0.reshape(b, n).T)[0].T
    init = dict(V=jnp.zeros((m, n), dtype), H=jnp.zeros((m, m), dtype), Q=Q0, j=jnp.asarray(0),
                cycle=jnp.asarray(0), hvps=jnp.asarray(0), sweeps=jnp.asarray(0), theta=jnp.zeros((), dtype),
                err=jnp.asarray(jnp.inf, dtype), rmin=jnp.asarray(jnp.inf, dtype), gap=jnp.zeros((), dtype),
                done=jnp.asarray(False), theta_keep=jnp.zeros(keep, dtype), Y_keep=jnp.zeros((m, keep), dtype),
                top=jnp.zeros((nvec, n), dtype))
    out = jax.lax.while_loop(lambda c: (~c["done"]) & (c["cycle"] < cycles), cycle, init)
    info = dict(hvps=out["hvps"], cycles=out["cycle"], error=out["err"], converged=out["done"], gap=out["gap"],
                sweeps=out["sweeps"])
    return out["theta"], info, out["top"]
