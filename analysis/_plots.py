"""Plots of runs: margins with theory overlays, losses with spikes, the γ-plane landscape, sharpness.

Every panel function takes a matplotlib `ax` (or None, to make a figure) and returns the
axes. Colours are the Okabe–Ito palette (colour-blind safe); with more than 8 tokens the
margins use the viridis map by frequency rank. Non-finite rows are never drawn: a panel
draws up to the first bad row and writes where the run stopped being finite.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ._detectors import finite_rows, head, loss_spikes, times

__all__ = [
    "OKABE_ITO",
    "plot_margins",
    "plot_losses",
    "plot_landscape",
    "plot_sharpness",
    "gamma_of_scores",
    "gamma_of_margins",
    "landscape",
    "representative_tokens",
]

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    return ax


def _xlabel(traj) -> str:
    if traj.steps is not None:
        return "step"
    return traj.metadata.get("time_label", "time t")


def _finite(traj):
    """(number of finite rows, step of the first bad row or None), without a warning."""
    return finite_rows(traj, "plot", warn=False)


def _annotate_bad(ax, bad, x_last=None, label: str = "") -> None:
    """Mark where a run stopped being finite; several runs stack their notes upwards."""
    if bad is None:
        return
    if x_last is not None and np.isfinite(x_last):
        ax.axvline(x_last, color="0.4", lw=0.8, ls=":")
    k = getattr(ax, "_particles_bad", 0)
    ax._particles_bad = k + 1
    who = f"{label}: " if label else ""
    ax.text(0.98, 0.02 + 0.09 * k, f"{who}non-finite from step {bad}: not drawn", transform=ax.transAxes,
            ha="right", va="bottom", fontsize=8, color="#D55E00",
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#D55E00", lw=0.6))


FEW_TOKENS = 6
"""Up to this many tokens every margin is drawn; beyond, representative tokens and quantiles."""


def _token_colors(N: int):
    if N <= len(OKABE_ITO):
        return list(OKABE_ITO[:N])
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(i / max(N - 1, 1)) for i in range(N)]


def representative_tokens(margins, p=None) -> dict:
    """{role: token} for a run with many tokens: the most frequent, the median-frequency and
    the rarest token (by p; by index without p), and the token with the worst final margin.

    **Arguments:** `margins` (T, N); `p` (N,) or None. **Returns:** {role: token index}; a
    token playing two roles appears once.

    >>> import numpy as np
    >>> representative_tokens(np.array([[0.0, 0, 0, 0], [3.0, -1, 2, 1]]), p=[0.1, 0.2, 0.3, 0.4])
    {'most frequent': 3, 'median p': 1, 'rarest': 0}
    """
    m = np.asarray(margins, np.float64)
    N = m.shape[-1]
    order = np.arange(N) if p is None else np.argsort(-np.asarray(p, np.float64), kind="stable")
    last = m[-1] if len(m) else np.zeros(N)
    worst = int(np.argmin(np.where(np.isfinite(last), last, np.inf)))
    roles = {"most frequent": int(order[0]), "median p": int(order[N // 2]), "rarest": int(order[-1]), "worst": worst}
    seen, out = set(), {}
    for role, x in roles.items():  # a token that plays two roles is drawn once
        if x not in seen:
            out[role] = x
            seen.add(x)
    return out


def plot_margins(ax, traj, theory: Optional[dict] = None, logx: bool = False, label: str = "", color=None,
                 p=None):
    """Margins m(x) against steps (or t), with optional theory overlays.

    Up to `FEW_TOKENS` tokens every margin is drawn in its own colour. Beyond, the spread
    of all margins is a band (10–90% quantiles over tokens, median line) and a few labelled
    tokens are drawn: the most frequent, the median-frequency and the rarest (by `p`) and
    the worst at the end ([`representative_tokens`][]).

    **Arguments:**

    - `ax`: matplotlib axes, or None for a new figure.
    - `traj`: an unbatched Trajectory.
    - `theory`: {label: (t, values)} drawn dashed; values of shape (T',) or (T', N) (drawn
      for the tokens shown, in their colours).
    - `logx`: log-scaled time axis (rows at t = 0 are dropped): log growth is a line.
    - `label`: a prefix for the legend entries (e.g. the run's name).
    - `color`: draw the tokens in this one colour (to compare runs on one axes).
    - `p`: the frequencies, to pick representative tokens (by index without).

    **Returns:** the axes.

    >>> import particles as pt
    >>> traj = pt.gd(pt.random_sphere(0, 30, 2, 2), 2.0, 100)  # 30 tokens: a band and 4 labelled tokens
    >>> ax = plot_margins(None, traj, p=pt.zipf(30))
    >>> len(ax.get_legend().get_texts())
    6
    """
    ax = _axes(ax)
    n, bad = _finite(traj)
    x = np.asarray(times(traj), np.float64)[:n]
    m = np.asarray(traj.margins, np.float64)[:n]
    N = np.shape(traj.margins)[-1]
    keep = x > 0 if logx else np.ones_like(x, bool)
    pre = f"{label} " if label else ""
    if N <= FEW_TOKENS:
        shown = {f"m({i})": i for i in range(N)}
        colors = dict(zip(range(N), [color] * N if color is not None else _token_colors(N)))
    else:
        shown = {f"m({i}), {role}": i for role, i in representative_tokens(m, p).items()}
        colors = {i: (color or OKABE_ITO[j]) for j, i in enumerate(shown.values())}
        if n:
            lo, mid, hi = np.quantile(m[keep], [0.1, 0.5, 0.9], axis=1)
            ax.fill_between(x[keep], lo, hi, color=color or "0.6", alpha=0.25, lw=0,
                            label=f"{pre}10–90% of {N} tokens")
            ax.plot(x[keep], mid, color=color or "0.35", lw=1.0, ls="-", label=f"{pre}median over tokens")
    for name, i in shown.items():
        ax.plot(x[keep], m[keep, i], color=colors[i], lw=1.4, label=pre + name)
    for j, (name, (tt, vals)) in enumerate((theory or {}).items()):
        tt = np.asarray(tt, np.float64)
        vals = np.asarray(vals, np.float64)
        vals = vals[:, None] if vals.ndim == 1 else vals
        ok = np.all(np.isfinite(vals), axis=1) & np.isfinite(tt) & ((tt > 0) if logx else True)
        cols = list(shown.values()) if vals.shape[1] == N else range(vals.shape[1])
        for k, i in enumerate(cols):
            ax.plot(tt[ok], vals[ok, i], ls=("--", "-.", ":")[j % 3], lw=1.1,
                    color=colors.get(i, "black") if vals.shape[1] == N else "black", label=name if k == 0 else None)
    if logx:
        ax.set_xscale("log")
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set_xlabel(_xlabel(traj) + (" (log scale)" if logx else ""))
    ax.set_ylabel("margin m(x)")
    ax.legend(fontsize=7, loc="best")
    _annotate_bad(ax, bad, x[-1] if len(x) else None, label)
    return ax


def plot_losses(ax, traj, spikes=None, label: str = "", color=None, logx: bool = False):
    """The cross-entropy loss (log scale) and the 0-1 loss against steps (or t), spikes marked.

    **Arguments:**

    - `ax`: axes or None. The 0-1 loss goes on a twin axis on the right (it lies in [0, 1]).
    - `traj`: an unbatched Trajectory.
    - `spikes`: [`Spike`][]s to mark (triangles at their peaks); None detects them with
      [`loss_spikes`][] — for SGD only rises beyond the minibatch noise, since its
      population loss moves with every batch; pass [] for none.
    - `label`, `color`: legend prefix and colour of this run.
    - `logx`: log-scaled time axis (rows at t = 0 dropped).

    **Returns:** the (left) axes.

    >>> import particles as pt
    >>> ax = plot_losses(None, pt.gd(pt.two_particles(0.95, 0.75), 10.0, 35))
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['loss', 'spikes (7)']
    """
    ax = _axes(ax)
    n, bad = _finite(traj)
    x = np.asarray(times(traj), np.float64)[:n]
    L = np.asarray(traj.loss, np.float64)[:n]
    z = np.asarray(traj.zero_one, np.float64)[:n]
    keep = x > 0 if logx else np.ones_like(x, bool)
    color = color or OKABE_ITO[0]
    pre = f"{label} " if label else ""
    ax.plot(x[keep], L[keep], color=color, lw=1.5, label=pre + "loss")
    if n and np.all(L > 0):
        ax.set_yscale("log")
    ax2 = getattr(ax, "_particles_twin", None)
    if ax2 is None:
        ax2 = ax.twinx()
        ax._particles_twin = ax2
        ax2.set_ylim(-0.03, 1.03)
        ax2.set_ylabel("0-1 loss (dotted)")
    ax2.plot(x[keep], z[keep], color=color, lw=1.2, ls=":")
    if spikes is None:
        spikes = loss_spikes(head(traj, n)) if n else []
    peaks = np.array([s.peak_step for s in spikes], np.float64)
    if logx:
        peaks = peaks[peaks > 0]
    if peaks.size:
        idx = np.clip(np.searchsorted(x, peaks), 0, max(n - 1, 0))
        ax.plot(x[idx], L[idx], "v", color="#D55E00", ms=6, ls="none", label=pre + f"spikes ({len(spikes)})")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(_xlabel(traj) + (" (log scale)" if logx else ""))
    ax.set_ylabel("cross-entropy loss")
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    _annotate_bad(ax, bad, x[-1] if len(x) else None, label)
    return ax


# ---------------------------------------------------------------- γ-plane
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


def plot_sharpness(ax, t, lam, lr: Optional[float] = None, label: str = "λ_max"):
    """Sharpness λ_max(∇²L) along a run, with the stability threshold 2/η.

    **Arguments:** `ax` or None; `t` steps (T,); `lam` sharpness (T,); `lr` the step size η
    (draws the dashed line λ = 2/η; GD is locally stable below it); `label` for the legend.

    **Returns:** the axes.

    >>> ax = plot_sharpness(None, [0, 1, 2], [0.5, 0.3, 0.2], lr=5.0)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['λ_max', '2/η = 0.4']
    """
    ax = _axes(ax)
    t = np.asarray(t, np.float64)
    lam = np.asarray(lam, np.float64)
    ok = np.isfinite(lam) & np.isfinite(t)
    n = int(np.argmin(ok)) if not ok.all() else len(t)
    ax.plot(t[:n], lam[:n], color=OKABE_ITO[0], lw=1.5, label=label)
    if lr is not None:
        ax.axhline(2.0 / float(lr), color=OKABE_ITO[1], ls="--", lw=1.2, label=f"2/η = {2.0 / float(lr):.3g}")
    if n and np.all(lam[:n] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("sharpness λ_max(∇²L)")
    ax.legend(fontsize=8, loc="best")
    if n < len(t):
        _annotate_bad(ax, f"{t[n]:g}" if np.isfinite(t[n]) else f"row {n}", t[n - 1] if n else None)
    return ax
