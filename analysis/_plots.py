"""Plots of runs: margins with theory overlays, losses with spikes, the γ-plane landscape, sharpness.

Every panel function takes a matplotlib `ax` (or None, to make a figure) and returns the
axes. Colours are the Okabe–Ito palette (colour-blind safe); with more than 8 tokens the
margins use the viridis map by frequency rank. Non-finite rows are never drawn: a panel
draws up to the first bad row and writes where the run stopped being finite.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ._detectors import loss_spikes
from ._rows import finite_rows, head, times

__all__ = [
    "OKABE_ITO",
    "plot_margins",
    "plot_losses",
    "plot_sharpness",
    "representative_tokens",
]

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    return ax


def _log_scale(ax, which: str) -> None:
    """Put axis `which` ("x" or "y") on a log scale with minor ticks at 2 and 5 of each decade.

    1-2-5 ticks read as well as matplotlib's default 2…9 and are a third as many to lay out:
    drawing the headline's figure took 0.3 s less of its 1.2 s (BENCHMARKS.md, finding 7).
    """
    from matplotlib.ticker import LogLocator

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    getattr(ax, which + "axis").set_minor_locator(LogLocator(subs=(2.0, 5.0)))


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
        _log_scale(ax, "x")
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
        _log_scale(ax, "y")
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
        _log_scale(ax, "x")
    ax.set_xlabel(_xlabel(traj) + (" (log scale)" if logx else ""))
    ax.set_ylabel("cross-entropy loss")
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    _annotate_bad(ax, bad, x[-1] if len(x) else None, label)
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
        _log_scale(ax, "y")
    ax.set_xlabel("step")
    ax.set_ylabel("sharpness λ_max(∇²L)")
    ax.legend(fontsize=8, loc="best")
    if n < len(t):
        _annotate_bad(ax, f"{t[n]:g}" if np.isfinite(t[n]) else f"row {n}", t[n - 1] if n else None)
    return ax
