"""The separable regime (paper-notes §3.2): the max-margin W and the loss rate it predicts.

W_mm = argmin ||W||_F^2 subject to (u_{f*(x)} - u_y)^T W e_x >= 1 for every input x with
p(x) > 0 and every y != f*(x). GD margins grow like log t with W_t / log t -> W_mm and
L(W_t) * lr * t -> ||W_mm||_F^2: with W_t ~ W_mm log t + rho, stationarity of the flow gives
p_x e^{-a_i . rho} = lambda_i (the dual weights of the constraints), so
L * t ~ sum_i lambda_i = ||W_mm||^2 (support vectors in general position).

How fast: write A_i = (u_f - u_y) e_x^T for constraint i = (x, y) and, in log-time
s = log t, W = W_mm s + rho* + delta. Three corrections to L t / ||W_mm||^2 - 1 decay:

- a non-support constraint (max-margin margin kappa_i > 1) adds p e^{-kappa_i s} to the loss,
  relatively t^{-(kappa_i - 1)}, and forces delta at that rate;
- delta relaxes by delta' = -J delta, J = sum_{i support} lambda_i A_i <A_i, .>. W_mm is an
  eigenvector of J with eigenvalue 1 (a shift of log t: a 1/t correction); the loss is
  first-order blind to the other eigenvectors (they are orthogonal to W_mm =
  sum lambda_i A_i), so an eigenvalue mu < 1 enters at second order, as t^{-2 mu};
- the next terms of the expansion, O(log(t) / t).

So the relative error decays like t^{-r}, r = min(kappa - 1, 2 mu, 1) (`MaxMargin.rate`),
kappa the smallest non-support margin and mu the smallest eigenvalue of J: often far slower
than the log(t)/t of the orthogonal case. Measured on a separable problem (N = 10, M = 2,
d = 3, kappa - 1 = 0.1348): L t / ||W_mm||^2 - 1 = -2.7e-3 at t = 1e8, -4.7e-5 at 1e20,
local exponent within 1e-3 of 0.1348 from t = 1e20 on (tests/test_theory_separable.py, an
independent ODE). For the
two-particle system mu = (1 + corr)/(1 - corr) (corr < 0) gives its t^{-2(1+corr)/(1-corr)}.
"""

from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .. import _validate as v
from .._problem import Problem
from ._span import span


class MaxMargin(eqx.Module):
    """The minimal-Frobenius-norm W with all margins >= 1.

    **Fields:**

    - `W`: W_mm, shape (d, d), when the embeddings are known; else `None`.
    - `K`: W_mm in the reduced coordinates of the span (r_U x r_E); ||K||_F = ||W_mm||_F.
    - `norm2`: ||W_mm||_F^2.
    - `scores`: S = E W_mm^T U^T, shape (N, M).
    - `dual`: Lagrange multiplier of each constraint (x, y), shape (N, M), zero at y = f*(x)
      and for inactive constraints; sum(dual) = norm2.
    - `kappa`: the smallest margin (u_f - u_y)^T W_mm e_x > 1 of a non-support constraint
      (+inf when every constraint is active).
    - `mu`: the smallest non-zero eigenvalue of J = sum_i lambda_i A_i <A_i, .> over the
      support constraints (A_i = (u_f - u_y) e_x^T); W_mm is an eigenvector with eigenvalue 1.
    - `rate`: min(kappa - 1, 2 mu, 1): L(W_t) lr t / norm2 - 1 decays like t^{-rate}
      (like log(t) / t when rate = 1); see the module docstring.
    """

    W: Optional[Float[Array, "d d"]]
    K: Float[Array, "rU rE"]
    norm2: Float[Array, ""]
    scores: Float[Array, "N M"]
    dual: Float[Array, "N M"]
    kappa: Optional[Float[Array, ""]] = None
    mu: Optional[Float[Array, ""]] = None
    rate: Optional[Float[Array, ""]] = None


def _constraints(problem: Problem, sp):
    """Rows a_(x,y) = vec((h_{f*(x)} - h_y) f_x^T), for p(x) > 0 and y != f*(x)."""
    p = np.asarray(problem.p)
    f = np.asarray(problem.targets)
    rows, index = [], []
    for x in range(problem.N):
        if p[x] <= 0:
            continue
        for y in range(problem.M):
            if y == f[x]:
                continue
            rows.append(np.outer(sp.H[f[x]] - sp.H[y], sp.F[x]).ravel())
            index.append((x, y))
    n = sp.H.shape[1] * sp.F.shape[1]
    return (np.array(rows).reshape(len(rows), n), index)


def _one_hot(problem: Problem) -> bool:
    Y = np.asarray(problem.Y)
    return bool(np.all((Y == 0) | (Y == 1)))


def max_margin(problem: Problem) -> MaxMargin:
    """Solve the max-margin problem exactly (least-distance programming).

    The QP min ||w||^2 s.t. A w >= 1 is solved as in Lawson & Hanson (ch. 23) by the
    non-negative least squares min ||[A^T; 1^T] u - e_{n+1}||, u >= 0 (`scipy.optimize.nnls`,
    an exact active-set method), then polished by the equality-constrained solution on the
    active set. Works in the span's reduced coordinates, so Gram-only problems work too.

    **Arguments:**

    - `problem`: a [`Problem`][] with one-hot targets (f*(x)).

    **Returns:** a [`MaxMargin`][]. Raises `ValueError` when the problem is not separable
    (no W reaches margin 1 on every input with p(x) > 0) or has M = 1.
    """
    if problem.M < 2:
        raise ValueError(f"problem has M={problem.M}: max_margin needs M >= 2 classes (with M = 1 margins are +inf).")
    if not _one_hot(problem):
        raise ValueError("problem.Y holds soft labels q(y|x): max_margin needs one-hot targets f*(x).")
    sp = span(problem)
    A, index = _constraints(problem, sp)
    m, n = A.shape
    Emat = np.vstack([A.T, np.ones((1, m))])
    f = np.zeros(n + 1)
    f[-1] = 1.0
    import scipy.optimize  # imported on use: it costs 0.25 s at start-up

    u, rnorm = scipy.optimize.nnls(Emat, f, maxiter=50 * (n + m + 1))
    r = Emat @ u - f
    if rnorm < 1e-10 or r[-1] > -1e-10:
        raise ValueError("problem is not separable: no W gives every input with p(x) > 0 a margin >= 1 "
                         "(see ce_minimizer for the cross-entropy minimizer).")
    w = -r[:n] / r[-1]
    lam = u / (-r[-1])
    # Polish on the active set: w = A_S^T (A_S A_S^T)^+ 1 is the exact solution when the
    # active set is right (keep it only if it stays feasible with non-negative multipliers).
    act = lam > 1e-12 * max(lam.max(initial=0.0), 1e-300)
    if act.any():
        A_S = A[act]
        mu = np.linalg.lstsq(A_S @ A_S.T, np.ones(act.sum()), rcond=None)[0]
        w2 = A_S.T @ mu
        if np.all(A @ w2 >= 1 - 1e-12) and np.all(mu >= -1e-12):
            w = w2
            lam = np.zeros(m)
            lam[act] = np.maximum(mu, 0.0)
    K = w.reshape(sp.H.shape[1], sp.F.shape[1])
    dual = np.zeros((problem.N, problem.M))
    for (x, y), l in zip(index, lam):
        dual[x, y] = l
    Wd = sp.weights(K)
    dt = problem.dtype
    kappa, mu = _rates(A, w, lam)
    return MaxMargin(
        W=None if Wd is None else jnp.asarray(Wd, dt),
        K=jnp.asarray(K, dt),
        norm2=jnp.asarray(w @ w, dt),
        scores=jnp.asarray(sp.scores(K), dt),
        dual=jnp.asarray(dual, dt),
        kappa=jnp.asarray(kappa, dt),
        mu=jnp.asarray(mu, dt),
        rate=jnp.asarray(min(kappa - 1.0, 2.0 * mu, 1.0), dt),
    )


def _rates(A: np.ndarray, w: np.ndarray, lam: np.ndarray) -> tuple:
    """kappa (smallest margin of an inactive constraint) and mu (smallest non-zero eigenvalue
    of J = A_S^T diag(lambda_S) A_S), in the span's coordinates (an isometry of W-space)."""
    margins = A @ w
    # Active = margin 1 up to the solver's rounding (the polished solution holds them to 1e-12).
    inactive = margins > 1.0 + 1e-9
    kappa = float(margins[inactive].min()) if inactive.any() else np.inf
    J = (A.T * lam) @ A
    ev = np.linalg.eigvalsh((J + J.T) / 2)
    ev = ev[ev > 1e-10 * max(ev.max(initial=0.0), 1e-300)]
    mu = float(ev.min()) if ev.size else np.inf
    return kappa, mu


def separable_loss_asymptote(
    norm2: Float[ArrayLike, ""], t: Float[ArrayLike, "*B"], lr: Float[ArrayLike, "*B"] = 1.0
) -> Float[Array, "*B"]:
    """The predicted loss ||W_mm||^2 / (lr t) after t GD steps of size lr (flow: lr = 1).

    **Arguments:** `norm2` = `max_margin(problem).norm2`; `t` steps (or time); `lr`.

    **Returns:** L(W_t) predicted by L * lr * t -> ||W_mm||_F^2. Approached slowly: the
    relative error decays like t^{-rate} with `max_margin(problem).rate` =
    min(kappa - 1, 2 mu, 1) (log(t) / t only when rate = 1), set by the smallest margin
    kappa of a non-support constraint under W_mm and the slowest relaxation mu of the support
    (module docstring). With kappa - 1 = 0.135 the error is still 2.7e-3 at t = 1e8. For GD
    with a large lr the first step's margins (~ lr p) must also be forgotten first, which
    takes lr t >> e^{those margins} (see `orthogonal_asymptote_valid` for the orthogonal case).

    >>> import particles as pt
    >>> from particles import theory
    >>> mm = theory.max_margin(pt.two_particles(-0.5, 0.75))
    >>> round(float(mm.norm2), 6), round(float(mm.rate), 6)  # 1/(1 - corr); 2(1 + corr)/(1 - corr)
    (0.666667, 0.666667)
    """
    v.check_positive("norm2", norm2)
    norm2, t, lr = (jnp.asarray(a, jnp.result_type(float)) for a in (norm2, t, lr))
    return norm2 / (lr * t)
