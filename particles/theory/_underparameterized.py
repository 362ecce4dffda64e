"""The underparameterized regime (paper-notes §3.4): the cross-entropy minimizer W_CE and the
observables of a point of W-space. The best achievable 0-1 loss and the gap between the two
live in `_zero_one`.

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
from ._span import span

# Dense Newton builds the (r_U r_E)^2 Hessian: fine up to a few thousand coordinates.
_NEWTON_MAX = 2500


class Solution(eqx.Module):
    """A point of W-space and its observables.

    **Fields:**

    - `scores`: S, shape (N, M).
    - `loss`: the cross-entropy at S (for `best_zero_one` it depends on the arbitrary scale
      of the returned direction; only `zero_one` is meaningful there).
    - `zero_one`: the 0-1 loss of `scores` under `particles.zero_one` (ties to the first class).
    - `W`: the weights (d, d) when the embeddings are known, else `None`.
    - `K`: the same point in the span's reduced coordinates (r_U x r_E).
    - `grad_norm`: ||nabla_W L||_F at S (from the Grams: tr(G_U R^T D G_E D R)^(1/2)).
    - `iterations`: Newton iterations (`ce_minimizer`); branch-and-bound nodes plus LPs
      (`best_zero_one`).
    - `exact`: True when the result is certified: Newton converged (`ce_minimizer`), or
      `zero_one` is the proven minimum (`best_zero_one`). Same as `bound == "exact"`.
    - `method`: how it was obtained.
    - `bound`: `"exact"` or `"upper"`: what the value solved for is, `zero_one` against
      min_W L01 for `best_zero_one`, `loss` against min_W L for `ce_minimizer` ("upper":
      the minimum is <= the value; the value of any W is an upper bound).
    - `lower`: `best_zero_one` only: a certified lower bound on min_W L01 (equal to
      `zero_one` when exact); `None` elsewhere.
    - `gap`: `best_zero_one` only: zero_one - lower; `None` elsewhere.
    - `status`: the solver's outcome (`best_zero_one`: HiGHS' status, e.g. "optimal";
      `ce_minimizer`: "converged").

    Scores of `best_zero_one` equal F K^T H^T except where its optimum needs exact ties
    that the float product breaks by a few ulps; those entries are written equal (the
    `method` then says so).
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
    bound: str = eqx.field(static=True, default="exact")
    lower: Optional[Float[Array, ""]] = None
    gap: Optional[Float[Array, ""]] = None
    status: str = eqx.field(static=True, default="")


def gradient_norm(problem: Problem, S: Float[Array, "N M"]) -> Float[Array, ""]:
    """||nabla_W L||_F at scores S, with nabla_W L = U^T R^T D E, R = softmax(S) - Y, D = diag(p).

    Computed as ||H^T R^T D F||_F in the span's factors (no embeddings needed). (The Gram
    identity ||grad||^2 = tr(G_U R^T D G_E D R) cancels catastrophically below ~1e-8.)
    """
    return _grad_norm(problem, span(problem), S)


def _grad_norm(problem, sp, S):
    R = problem.p[:, None] * obs.residual(S, problem.Y)
    return jnp.linalg.norm(jnp.asarray(sp.H).T @ R.T @ jnp.asarray(sp.F))


def _solution(problem, sp, K, iterations, exact, method, *, scores=None, **extra) -> Solution:
    dt = problem.dtype
    S = jnp.asarray(sp.scores(K) if scores is None else scores, dt)
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
        **extra,
    )


def _recession_direction(problem: Problem, sp) -> bool:
    """True when the cross-entropy decreases forever along some direction of W.

    Along scores S + s D the loss of input x behaves like s (max_y D_xy - sum_y q_xy D_xy)
    for large s: it is non-increasing iff D is constant, c_x, on the support of q(.|x) and
    <= c_x off it, and then decreases (strictly, forever) iff some D_xy < c_x off the support
    for an x with p(x) > 0. With one-hot targets that is a direction raising margins without
    lowering any. When no such direction exists, the only directions of non-increase keep
    every row's scores equal (the softmax shift), so the loss is coercive on the rest of the
    span and a finite minimizer exists. One LP: with a_xy = vec((h_y0 - h_y) f_x^T) (y0 the
    first class of the support), max 1^T A w s.t. 0 <= A w <= 1 (y off the support) and
    a_xy . w = 0 (y on it).
    """
    Y = np.asarray(problem.Y, np.float64)
    p = np.asarray(problem.p)
    ineq, eq = [], []
    for x in np.flatnonzero(p > 0):
        support = np.flatnonzero(Y[x] > 0)
        y0 = support[0]
        for y in range(problem.M):
            if y != y0:
                (eq if Y[x, y] > 0 else ineq).append(np.outer(sp.H[y0] - sp.H[y], sp.F[x]).ravel())
    if not ineq:
        return False
    n = sp.H.shape[1] * sp.F.shape[1]
    A = np.array(ineq).reshape(len(ineq), n)
    m = A.shape[0]
    import scipy.optimize  # imported on use: it costs 0.25 s at start-up

    res = scipy.optimize.linprog(
        -A.sum(0), A_ub=np.vstack([-A, A]), b_ub=np.concatenate([np.zeros(m), np.ones(m)]),
        A_eq=np.array(eq).reshape(len(eq), n) if eq else None, b_eq=np.zeros(len(eq)) if eq else None,
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

    **Returns:** a [`Solution`][] (`exact=True`, `status="converged"` once the gradient norm
    is <= tol; `exact=False` if Newton stalls at rounding level above it).

    Raises `ValueError` saying "no finite minimizer: separable" when some direction of W
    lowers the loss forever, so that the infimum is not attained (GD margins grow without
    bound). With one-hot targets: a direction raising margins without lowering any (the whole
    problem, or part of it, is separable). With soft targets q(y|x): a direction keeping the
    scores equal on the support of every q(.|x) (p(x) > 0) and pushing some class off the
    support below them, e.g. a class that is never a target, with an output embedding of
    its own.

    >>> import particles as pt
    >>> from particles import theory
    >>> E = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
    >>> P = pt.Problem.from_embeddings(E, [[1.0, 0.0], [0.0, 1.0]], [0.5, 0.3, 0.2], [0, 1, 0])
    >>> ce = theory.ce_minimizer(P)
    >>> ce.exact, float(ce.grad_norm) < 1e-10
    (True, True)
    """
    v.check_positive("tol", tol)
    max_iter = v.check_count("max_iter", max_iter, 1)
    sp = span(problem)
    rU, rE = sp.H.shape[1], sp.F.shape[1]
    n = rU * rE
    if n > _NEWTON_MAX:
        raise ValueError(f"the span has r_U * r_E = {n} coordinates; ce_minimizer's dense Newton allows <= {_NEWTON_MAX}.")
    if problem.M >= 2 and _recession_direction(problem, sp):
        raise ValueError(
            "no finite minimizer: separable (some direction of W raises every target score above the "
            "classes outside the support of q(.|x) without lowering any, so the cross-entropy keeps "
            "decreasing along it; with one-hot targets max_margin gives the direction)."
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
    gnorm = float(jnp.linalg.norm(g))
    converged = gnorm <= tol
    status = "converged" if converged else f"stalled at rounding level (gradient norm {gnorm:.3g} > tol={tol:g})"
    return _solution(problem, sp, np.asarray(w).reshape(rU, rE), it, converged, "newton",
                     bound="exact" if converged else "upper", status=status)


def top_frequency_scores(problem: Problem, r: int) -> Float[Array, "N M"]:
    """Scores of W* = sum_{x in top r} u_{f*(x)} e_x^T, the r most frequent inputs stored.

    S = G_E[:, top] Y[top] G_U (S[x', y] = sum_{x in top} <e_x', e_x> <u_{f*(x)}, u_y>).
    Ties in p keep the input order.
    """
    r = v.check_count("r", r, 0)
    if r > problem.N:
        v.fail("r", r, f"it must be <= N={problem.N}")
    top = np.argsort(-np.asarray(problem.p), kind="stable")[:r]
    # A mask rather than an index of length r: one compilation for every r.
    keep = np.zeros(problem.N, bool)
    keep[top] = True
    Yt = jnp.where(jnp.asarray(keep)[:, None], jax.nn.one_hot(problem.targets, problem.M, dtype=problem.dtype), 0.0)
    return problem.direction(Yt)
