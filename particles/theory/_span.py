"""Reduced coordinates of W: only its restriction to span{u_y} x span{e_x} affects the scores.

Write G_E = F F^T (F: N x r_E) and G_U = H H^T (H: M x r_U) with full column ranks. Every
score matrix reachable from W has the form S = F K^T H^T with K (r_U x r_E) and
S[x, y] = h_y^T K f_x; the minimal-norm W giving S has ||W||_F = ||K||_F. When E and U are
known, F = E V_E and H = U V_U (V the right singular vectors), and W = V_U K V_E^T.
From Grams alone the factors come from eigh and W stays unknown (None).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from .._problem import Problem


class Span(NamedTuple):
    F: np.ndarray  # (N, r_E)
    H: np.ndarray  # (M, r_U)
    V_E: Optional[np.ndarray]  # (d, r_E) or None
    V_U: Optional[np.ndarray]  # (d, r_U) or None

    def scores(self, K: np.ndarray) -> np.ndarray:
        return self.F @ K.T @ self.H.T

    def weights(self, K: np.ndarray) -> Optional[np.ndarray]:
        if self.V_E is None or self.V_U is None:
            return None
        return self.V_U @ K @ self.V_E.T


def _from_factor(X: np.ndarray):
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    tol = max(X.shape) * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)
    r = int(np.sum(s > tol))
    V = Vt[:r].T
    return X @ V, V


def _from_gram(G: np.ndarray):
    lam, Q = np.linalg.eigh((G + G.T) / 2)
    tol = G.shape[0] * np.finfo(np.float64).eps * max(lam.max(initial=0.0), 0.0) * 10
    keep = lam > tol
    return Q[:, keep] * np.sqrt(lam[keep])


def span(problem: Problem) -> Span:
    """The factors F, H (and V_E, V_U when the embeddings are known), float64 numpy."""
    if problem.E is not None and problem.U is not None:
        F, V_E = _from_factor(np.asarray(problem.E, np.float64))
        H, V_U = _from_factor(np.asarray(problem.U, np.float64))
        return Span(F, H, V_E, V_U)
    return Span(_from_gram(np.asarray(problem.G_E, np.float64)), _from_gram(np.asarray(problem.G_U, np.float64)), None, None)
