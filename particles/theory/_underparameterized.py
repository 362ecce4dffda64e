"""The underparameterized regime (paper-notes §3.4): the cross-entropy minimizer W_CE, the best
achievable 0-1 loss, and the gap between them.

All solvers work in the reduced coordinates of `_span` (S = F K^T H^T, ||W|| = ||K||), so
they also accept Gram-only problems; W is returned when the embeddings are known.
"""

from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import _observables as obs
from .. import _validate as v
from .._problem import Problem
from ._separable import _constraints, _one_hot
from ._span import span

# Dense Newton builds the (r_U r_E)^2 Hessian: fine up to a few thousand coordinates.
_NEWTON_MAX = 2500


class Solution(eqx.Module):
    """A point of W-space and its observables.

    **Fields:**

    - `scores`: S, shape (N, M).
    - `loss`: the cross-entropy at S (for `best_zero_one` it depends on the arbitrary scale
      of the returned direction; only `zero_one` is meaningful there).
    - `zero_one`: the 0-1 loss at S (ties to the first class, as `particles.zero_one`).
    - `W`: the weights (d, d) when the embeddings are known, else `None`.
    - `K`: the same point in the span's reduced coordinates (r_U x r_E).
    - `grad_norm`: ||nabla_W L||_F at S (from the Grams: tr(G_U R^T D G_E D R)^(1/2)).
    - `iterations`: Newton iterations (`ce_minimizer`) or candidates tried (`best_zero_one`).
    - `exact`: True when the result is certified (Newton converged / exhaustive sweep).
    - `method`: how it was obtained.
    """

    scores: Float[Array, "N M"]
    loss: Float[Array, ""]
    zero_one: Float[Array, ""]
    W: Optional[Float[Array, "d d"]]
    K: Float[Array, "rU rE"]
    grad_norm: Float[Array, ""]
    iterations: int = eqx.field(static=True)
    exact: bool = eqx.field(static=True)
    method: str = eqx.field(static=True)


def gradient_norm(problem: Problem, S: Float[Array, "N M"]) -> Float[Array, ""]:
    """||nabla_W L||_F at scores S, with nabla_W L = U^T R^T D E, R = softmax(S) - Y, D = diag(p).

    Computed as ||H^T R^T D F||_F in the span's factors (no embeddings needed). (The Gram
    identity ||grad||^2 = tr(G_U R^T D G_E D R) cancels catastrophically below ~1e-8.)
    """
    return _grad_norm(problem, span(problem), S)


def _grad_norm(problem, sp, S):
    R = problem.p[:, None] * obs.residual(S, problem.Y)
    return jnp.linalg.norm(jnp.asarray(sp.H).T @ R.T @ jnp.asarray(sp.F))


def _solution(problem, sp, K, iterations, exact, method) -> Solution:
    dt = problem.dtype
    S = jnp.asarray(sp.scores(K), dt)
    Wd = sp.weights(K)
    return Solution(
        scores=S,
        loss=obs.loss(S, problem.p, problem.Y),
        zero_one=obs.zero_one(S, problem.p, problem.Y),
        W=None if Wd is None else jnp.asarray(Wd, dt),
        K=jnp.asarray(K, dt),
        grad_norm=_grad_norm(problem, sp, S),
        iterations=iterations,
        exact=exact,
        method=method,
    )


def _recession_direction(problem: Problem, sp) -> bool:
    """True when some w has all margin directional derivatives A w >= 0 and one > 0.

    Then the one-hot cross-entropy decreases forever along w (no finite minimizer); otherwise
    it is coercive on the span and a minimizer exists. One LP: max 1^T A w, 0 <= A w <= 1.
    """
    A, _ = _constraints(problem, sp)
    m, n = A.shape
    import scipy.optimize  # imported on use: it costs 0.25 s at start-up

    res = scipy.optimize.linprog(
        -A.sum(0), A_ub=np.vstack([-A, A]), b_ub=np.concatenate([np.zeros(m), np.ones(m)]),
        bounds=[(None, None)] * n, method="highs",
    )
    return bool(res.status == 0 and -res.fun > 1e-9 * max(1.0, np.abs(A).max()))


def _ce_loss(w, F, H, p, Y):
    return obs.loss(F @ w.reshape(H.shape[1], F.shape[1]).T @ H.T, p, Y)


# Module-level jits: repeated calls on problems of the same shapes reuse the compilation.
_value_grad = jax.jit(jax.value_and_grad(_ce_loss))
_hessian = jax.jit(jax.hessian(_ce_loss))


def ce_minimizer(problem: Problem, *, tol: float = 1e-10, max_iter: int = 100) -> Solution:
    """The minimizer W_CE of the population cross-entropy (convex), by damped Newton.

    Newton steps in the span's coordinates use the pseudo-inverse of the Hessian (its null
    space, e.g. the softmax shift, is orthogonal to the gradient) with Armijo backtracking,
    until ||nabla_W L||_F <= tol.

    **Arguments:**

    - `problem`: a [`Problem`][] (Grams suffice).
    - `tol`: gradient-norm target (W-space Frobenius norm).
    - `max_iter`: Newton iterations before giving up.

    **Returns:** a [`Solution`][] (`exact=True`). Raises `ValueError` saying "no finite
    minimizer: separable" when, with one-hot targets, some direction raises margins without
    lowering any (the whole problem, or part of it, is separable: GD margins grow forever).
    """
    v.check_positive("tol", tol)
    max_iter = v.check_count("max_iter", max_iter, 1)
    sp = span(problem)
    rU, rE = sp.H.shape[1], sp.F.shape[1]
    n = rU * rE
    if n > _NEWTON_MAX:
        raise ValueError(f"the span has r_U * r_E = {n} coordinates; ce_minimizer's dense Newton allows <= {_NEWTON_MAX}.")
    if problem.M >= 2 and _one_hot(problem) and _recession_direction(problem, sp):
        raise ValueError(
            "no finite minimizer: separable (some direction of W raises margins without lowering any, "
            "so the cross-entropy keeps decreasing along it; use max_margin for the direction)."
        )
    args = (jnp.asarray(sp.F, jnp.float64), jnp.asarray(sp.H, jnp.float64),
            problem.p.astype(jnp.float64), problem.Y.astype(jnp.float64))
    fg = lambda w: _value_grad(w, *args)  # noqa: E731
    hess = lambda w: _hessian(w, *args)  # noqa: E731
    w = jnp.zeros(n, jnp.float64)
    val, g = fg(w)
    # ||grad_K|| = ||grad_W||: the span coordinates are an isometry.
    for it in range(max_iter + 1):
        if float(jnp.linalg.norm(g)) <= tol:
            break
        if it == max_iter:
            raise ValueError(
                f"ce_minimizer did not converge in max_iter={max_iter} Newton iterations "
                f"(gradient norm {float(jnp.linalg.norm(g)):.3g} > tol={tol:g})."
            )
        lam, Q = np.linalg.eigh(np.asarray(hess(w)))
        keep = lam > 1e-13 * max(lam.max(), 1e-300)
        gq = Q.T @ np.asarray(g)
        step = -(Q[:, keep] @ (gq[keep] / lam[keep]))
        slope = float(np.asarray(g) @ step)
        a = 1.0
        while True:
            new = w + a * jnp.asarray(step)
            nval, ng = fg(new)
            # Near the optimum the decrease falls below the resolution of the loss: a full
            # Newton step that shrinks the gradient is then accepted on that evidence.
            armijo = float(nval) <= float(val) + 1e-4 * a * slope
            shrinks = a == 1.0 and float(jnp.linalg.norm(ng)) < 0.5 * float(jnp.linalg.norm(g))
            if armijo or shrinks or a < 1e-12:
                break
            a *= 0.5
        if a < 1e-12 and float(nval) > float(val):
            break  # at rounding level: no descent left
        w, val, g = new, nval, ng
    return _solution(problem, sp, np.asarray(w).reshape(rU, rE), it, True, "newton")


def top_frequency_scores(problem: Problem, r: int) -> Float[Array, "N M"]:
    """Scores of W* = sum_{x in top r} u_{f*(x)} e_x^T, the r most frequent inputs stored.

    S = G_E[:, top] Y[top] G_U (S[x', y] = sum_{x in top} <e_x', e_x> <u_{f*(x)}, u_y>).
    Ties in p keep the input order.
    """
    r = v.check_count("r", r, 0)
    if r > problem.N:
        v.fail("r", r, f"it must be <= N={problem.N}")
    top = np.argsort(-np.asarray(problem.p), kind="stable")[:r]
    Yt = jnp.zeros_like(problem.Y).at[top].set(jax.nn.one_hot(problem.targets[top], problem.M, dtype=problem.dtype))
    return problem.direction(Yt)


def _sweep_circle(problem, sp) -> tuple:
    """Exact best 0-1 loss for M = 2 and r_E <= 2 (e.g. d = 2): only gamma = K^T (h_0 - h_1)
    matters (S[x, 0] - S[x, 1] = gamma . f_x) and the 0-1 loss is constant between the
    critical directions gamma . f_x = 0; try the midpoint of every arc, and gamma = 0."""
    dh = sp.H[0] - sp.H[1]
    g2 = dh @ dh
    rE = sp.F.shape[1]
    Fp = np.zeros((sp.F.shape[0], 2))
    Fp[:, :rE] = sp.F
    nz = np.linalg.norm(Fp, axis=1) > 0
    ang = np.arctan2(Fp[nz, 1], Fp[nz, 0])
    crit = np.unique(np.mod(np.concatenate([ang + np.pi / 2, ang - np.pi / 2]), 2 * np.pi))
    if crit.size == 0:
        mids = np.array([0.0])
    else:
        nxt = np.concatenate([crit[1:], [crit[0] + 2 * np.pi]])
        mids = (crit + nxt) / 2
    gammas = np.concatenate([np.stack([np.cos(mids), np.sin(mids)], 1), np.zeros((1, 2))])[:, :rE]
    Ks = [np.outer(dh, gm) / g2 for gm in gammas] if g2 > 0 else [np.zeros((sp.H.shape[1], rE))]
    return Ks


def best_zero_one(problem: Problem, *, samples: int = 4096, key=None) -> Solution:
    """The smallest achievable 0-1 loss over W (ties to the first class).

    - Two classes (M = 2) with inputs spanning <= 2 dimensions (e.g. d = 2): exact, by the
      sweep of the circle of directions of gamma = W^T (u_0 - u_1) (paper-notes §3.3, §4.4-5):
      the 0-1 loss is piecewise constant between the directions orthogonal to some e_x; every
      arc is tried (`exact=True`). Boundary directions (ties) are not tried: they can only
      win with exactly opposite embeddings e_x = -c e_x' (measure zero).
    - Otherwise a documented search (`exact=False`, an upper bound on the minimum): the
      top-frequency schemes W* = sum_{x <= r} u_{f*(x)} e_x^T for r = 0..N, the
      cross-entropy minimizer when finite, and `samples` random Gaussian directions K in
      the span (PRNG `key`, default PRNGKey(0)); the best candidate is returned.

    **Returns:** a [`Solution`][] with the best scores found (`loss` is the cross-entropy at
    that arbitrary scale).
    """
    samples = v.check_count("samples", samples, 0)
    sp = span(problem)
    rU, rE = sp.H.shape[1], sp.F.shape[1]
    if problem.M == 2 and rE <= 2:
        Ks, exact, method = _sweep_circle(problem, sp), True, "circle sweep"
    else:
        Ks, exact, method = [], False, "search: top-frequency, ce_minimizer, random"
        key = jax.random.PRNGKey(0) if key is None else key
        if samples:
            Ks += list(np.asarray(jax.random.normal(key, (samples, rU, rE), jnp.float64)))
        try:
            Ks.append(np.asarray(ce_minimizer(problem).K))
        except ValueError:
            pass
    F, H = jnp.asarray(sp.F), jnp.asarray(sp.H)
    cand_S = [jnp.einsum("xi,kji,yj->kxy", F, jnp.asarray(np.array(Ks)), H)] if Ks else []
    if not exact:
        cand_S.append(jnp.stack([top_frequency_scores(problem, r).astype(jnp.float64) for r in range(problem.N + 1)]))
    allS = jnp.concatenate(cand_S).astype(problem.dtype)
    z = obs.zero_one(allS, problem.p, problem.Y)
    best = int(jnp.argmin(z))
    if best < len(Ks):
        return _solution(problem, sp, np.asarray(Ks[best]), len(allS), exact, method)
    # A top-frequency scheme won: its K is the projection of W* on the span.
    r = best - len(Ks)
    S = allS[best]
    K, *_ = np.linalg.lstsq(np.kron(sp.F, sp.H), np.asarray(S, np.float64).T.ravel(order="F"), rcond=None)
    return _solution(problem, sp, K.reshape(rE, rU).T, len(allS), exact, method + f" (won: top-{r})")


def zero_one_gap(problem: Problem) -> Float[Array, ""]:
    """The gap L01(W_CE) - min_W L01(W): how much 0-1 loss cross-entropy gives up.

    Exact when [`best_zero_one`][] is (M = 2, d = 2); otherwise a lower bound on the gap.
    Raises like [`ce_minimizer`][] when there is no finite minimizer.
    """
    return ce_minimizer(problem).zero_one - best_zero_one(problem).zero_one
