"""The γ-plane of two classes in a plane: γ = Wᵀ(u₀ − u₁) carries the whole state, and the
landscape of cross-entropy and 0-1 loss over it (paper §3.3, §4.1)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._plots import OKABE_ITO, _axes

__all__ = ["gamma_of_scores", "gamma_of_margins", "landscape", "plot_landscape"]


def _two_class_inputs(problem) -> np.ndarray:
    """E (N, 2) in some orthonormal basis of the input plane; ValueError unless M = 2, rank <= 2."""
    if problem.M != 2:
        raise ValueError(f"problem has M={problem.M} classes: the γ-plane needs M = 2.")
    if problem.E is not None:
        E = np.asarray(problem.E, np.float64)
        if E.shape[1] != 2:
            raise ValueError(f"problem has d={E.shape[1]}: the γ-plane needs d = 2.")
        return E
    G = np.asarray(problem.G_E, np.float64)
    w, V = np.linalg.eigh(G)
    if np.sum(w > 1e-10 * max(1.0, w.max())) > 2:
        raise ValueError("problem's inputs span more than 2 dimensions: the γ-plane needs d = 2.")
    return V[:, -2:] * np.sqrt(np.maximum(w[-2:], 0))[None, :]


def gamma_of_scores(problem, scores) -> np.ndarray:
    """γ = W^T(u_1 - u_2) from saved scores, shape (T, 2) (or (2,) for one score matrix).

    With M = 2, S[x, 0] - S[x, 1] = (u_1 - u_2)^T W e_x = γ·e_x, so γ solves E γ = S[:, 0] - S[:, 1]
    (least squares; exact when S came from the dynamics). Needs M = d = 2.

    **Arguments:** `problem` with M = 2 and d = 2; `scores` of shape (T, N, 2) or (N, 2).

    **Returns:** γ, shape (T, 2) or (2,).

    >>> import particles as pt
    >>> traj = pt.gd(pt.two_particles(0.0, 0.5), 1.0, 1, save_scores=True)
    >>> gamma_of_scores(pt.two_particles(0.0, 0.5), traj.scores[1]).round(6).tolist()  # γ = η p_x (e_1 − e_2)
    [0.5, -0.5]
    """
    E = _two_class_inputs(problem)
    S = np.asarray(scores, np.float64)
    if S.shape[-2:] != (problem.N, 2):
        raise ValueError(f"scores has shape {S.shape}; expected (T, {problem.N}, 2) or ({problem.N}, 2).")
    diff = S[..., 0] - S[..., 1]
    g, *_ = np.linalg.lstsq(E, diff.reshape(-1, problem.N).T, rcond=None)
    return g.T.reshape(S.shape[:-2] + (2,))


def gamma_of_margins(problem, margins) -> np.ndarray:
    """γ from margins (no scores needed): with M = 2, m(x) = ±γ·e_x (+ for class 0).

    **Returns:** γ, shape (T, 2) (or (2,) for one row of margins).
    """
    E = _two_class_inputs(problem)
    m = np.asarray(margins, np.float64)
    sign = np.where(np.asarray(problem.targets) == 0, 1.0, -1.0)
    diff = m * sign
    g, *_ = np.linalg.lstsq(E, diff.reshape(-1, problem.N).T, rcond=None)
    return g.T.reshape(m.shape[:-1] + (2,))


def landscape(problem, extent=(-1.0, 1.0, -1.0, 1.0), grid: int = 50):
    """CE and 0-1 loss on a grid of the γ-plane: (g1, g2, ce, zero_one), each (grid, grid).

    Scores at γ are S[x] = (γ·e_x / 2, -γ·e_x / 2): with two classes the losses depend on
    the score difference δ_x = γ·e_x only, CE = Σ_x p(x) log(1 + exp(∓δ_x)) (− for class 0).
    Ties go to class 0, as in `particles.zero_one`. Computed in numpy: a new grid shape would
    otherwise compile the observables again for each figure.

    **Returns:** (γ1, γ2, CE, 0-1 loss), each (grid, grid).

    >>> import particles as pt
    >>> g1, g2, ce, zo = landscape(pt.two_particles(0.5, 0.75), grid=3)
    >>> round(float(ce[1, 1]), 6), float(zo[1, 1])  # γ = 0: log 2, and token 2 loses the tie
    (0.693147, 0.25)
    """
    E = _two_class_inputs(problem)
    x0, x1, y0, y1 = (float(v) for v in extent)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"extent={extent!r} is not allowed: it must be (xmin, xmax, ymin, ymax) with min < max.")
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(f"grid={grid!r} is not allowed: it must be an int >= 2.")
    g1, g2 = np.meshgrid(np.linspace(x0, x1, grid), np.linspace(y0, y1, grid))
    gam = np.stack([g1, g2], -1)
    delta = gam @ E.T  # (grid, grid, N): score of class 0 minus score of class 1
    p = np.asarray(problem.p, np.float64)
    first = np.asarray(problem.targets) == 0
    margin = np.where(first, delta, -delta)
    ce = np.logaddexp(0.0, -margin) @ p
    wrong = np.where(first, delta < 0, delta >= 0)
    zo = wrong.astype(np.float64) @ p
    return g1, g2, ce, zo


def plot_landscape(ax, problem, extent=(-1.0, 1.0, -1.0, 1.0), grid: int = 50, trajectories: Sequence = (),
                   levels: int = 15, mark=None):
    """Cross-entropy contours over the 0-1 loss (grey shading) in the γ-plane, γ = W^T(u_1 - u_2).

    **Arguments:**

    - `ax`: axes or None.
    - `problem`: a problem with M = d = 2 (any N; the paper's two particles have N = 2).
    - `extent`: (γ1 min, γ1 max, γ2 min, γ2 max).
    - `grid`: points per axis.
    - `trajectories`: (label, gamma) pairs, gamma of shape (T, 2) (from [`gamma_of_scores`][]
      or [`gamma_of_margins`][]); non-finite rows end the path with a cross.
    - `levels`: number of CE contour levels.
    - `mark`: optional {label: (γ1, γ2)} points to mark (e.g. the CE minimizer).

    **Returns:** the axes.

    >>> import particles as pt
    >>> ax = plot_landscape(None, pt.two_particles(0.95, 0.75), extent=(-1, 8, -17, 10))
    >>> ax.get_xlabel()
    'γ₁ (dimensionless)'
    """
    ax = _axes(ax)
    g1, g2, ce, zo = landscape(problem, extent, grid)
    ax.pcolormesh(g1, g2, zo, cmap="Greys", vmin=0, vmax=1.6, shading="auto", alpha=0.7)
    cs = ax.contour(g1, g2, ce, levels=levels, cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2g")
    for i, (label, gam) in enumerate(trajectories):
        gam = np.asarray(gam, np.float64)
        ok = np.all(np.isfinite(gam), axis=1)
        n = int(np.argmin(ok)) if not ok.all() else len(gam)
        c = OKABE_ITO[i % len(OKABE_ITO)]
        ax.plot(gam[:n, 0], gam[:n, 1], "-o", color=c, ms=2.5, lw=1.2, label=label)
        if n < len(gam) and n > 0:
            ax.plot(gam[n - 1, 0], gam[n - 1, 1], "x", color="#D55E00", ms=9, mew=2)
            ax.annotate(f"{label}: non-finite after row {n - 1}", (gam[n - 1, 0], gam[n - 1, 1]), fontsize=7,
                        color="#D55E00", xytext=(4, 4), textcoords="offset points")
    for j, (label, pt) in enumerate((mark or {}).items()):
        ax.plot([pt[0]], [pt[1]], marker="*", ms=11, color=OKABE_ITO[(j + 4) % 8], mec="black", ls="none",
                label=label)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("γ₁ (dimensionless)")
    ax.set_ylabel("γ₂ (dimensionless)")
    ax.set_title("CE contours; shading: 0-1 loss (darker = more errors)", fontsize=8)
    if trajectories or mark:
        ax.legend(fontsize=8, loc="best")
    return ax
