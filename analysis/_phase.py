"""Phase diagrams of a sweep: one figure per pair of swept axes."""

from __future__ import annotations

import numpy as np

__all__ = ["phase_diagrams", "LABELS", "TITLES"]

LABELS = {
    "lr": "learning rate η",
    "corr": "input correlation α",
    "p1": "frequency p₁",
    "log_odds": "log-odds log(p₁/p₂)",
    "zipf": "Zipf exponent a",
    "m": "outputs M",
    "d": "dimension d",
    "n": "inputs N",
    "seed": "seed",
}
TITLES = {
    "first_full_accuracy": "first step of 100% accuracy",
    "max_spike": "largest loss spike (nats)",
    "final_loss": "final loss (nats)",
    "loss_increases": "loss increases (steps)",
    "final_min_margin": "final smallest margin",
    "full_accuracy_from": "100% accuracy for good from step",
}


def _is_geometric(v) -> bool:
    v = np.asarray(v, dtype=float)
    if len(v) < 3 or np.any(v <= 0):
        return False
    r = v[1:] / v[:-1]
    return bool(np.allclose(r, r[0], rtol=1e-6) and abs(r[0] - 1) > 1e-9) and v.max() / v.min() >= 10


def phase_diagrams(result) -> dict:
    """One figure per pair of swept axes: time to full accuracy, largest spike, final loss.

    The learning rate goes on the vertical axis, as in the paper's phase diagrams; the
    other axes are sliced at their middle value (named in the title). Cells that never
    reach full accuracy are crossed, non-finite cells boxed.

    **Arguments:** `result`, a `particles.Sweep` recording `first_full_accuracy`,
    `max_spike` and `final_loss` (missing metrics leave their panel out).

    **Returns:** {"phase-<x>-<y>": matplotlib Figure}.

    >>> import particles as pt
    >>> s = pt.sweep("two_particles", {"lr": [0.1, 1.0, 10.0], "corr": [0.5, 0.7, 0.9]}, 100)
    >>> list(phase_diagrams(s))
    ['phase-corr-lr']
    """
    import itertools

    from matplotlib import colors
    from matplotlib.figure import Figure

    swept = [k for k, v in result.axes.items() if len(v) > 1]
    names = list(result.axes)
    metrics = [m for m in ("first_full_accuracy", "max_spike", "final_loss") if m in result.outputs]
    figures = {}
    for a, b in itertools.combinations(swept, 2):
        # The learning rate goes on the vertical axis, as in the paper's phase diagrams.
        x, y = (b, a) if a == "lr" else (a, b)
        index = []
        fixed = []
        for k in names:
            if k in (x, y):
                index.append(slice(None))
            else:
                mid = len(result.axes[k]) // 2
                index.append(mid)
                if len(result.axes[k]) > 1:
                    fixed.append(f"{k}={result.axes[k][mid]:.3g}")
        xs, ys = np.asarray(result.axes[x]), np.asarray(result.axes[y])
        fig = Figure(figsize=(4.7 * len(metrics), 4.2), layout="constrained")
        axs = np.atleast_1d(fig.subplots(1, len(metrics)))
        for ax, metric in zip(axs, metrics):
            z = np.asarray(result.outputs[metric], dtype=float)[tuple(index)]
            if names.index(x) < names.index(y):
                z = z.T  # rows follow y
            never = None
            if metric == "first_full_accuracy":
                never = z < 0
                z = np.where(never, np.nan, z)
            z = np.where(np.isfinite(z), z, np.nan)
            pos = z[np.isfinite(z) & (z > 0)]
            logc = pos.size > 0 and pos.max() / max(pos.min(), 1e-300) > 30
            if logc and metric != "first_full_accuracy":
                # No spike (0) would vanish on a log scale: floor it 8 decades below the largest.
                floor = max(pos.min(), pos.max() * 1e-8)
                z = np.where(np.isfinite(z), np.maximum(z, floor), z)
            zz = np.ma.masked_invalid(np.where(z > 0, z, np.nan) if logc else z)
            X, Yg = np.meshgrid(xs, ys)
            if zz.count() >= 4 and np.ptp(zz.compressed()) > 0:
                if logc:
                    lo, hi = np.log10(zz.min()), np.log10(zz.max())
                    levels = np.logspace(np.floor(lo), np.ceil(hi), max(3, int(np.ceil(hi) - np.floor(lo)) * 3 + 1))
                    cs = ax.contourf(X, Yg, zz, levels=levels, norm=colors.LogNorm(), cmap="viridis")
                else:
                    cs = ax.contourf(X, Yg, zz, levels=12, cmap="viridis")
                fig.colorbar(cs, ax=ax, label=TITLES[metric])
            else:
                cs = ax.pcolormesh(X, Yg, zz, cmap="viridis", shading="nearest")
                fig.colorbar(cs, ax=ax, label=TITLES[metric])
            if never is not None and np.any(never):
                ax.scatter(X[never], Yg[never], marker="x", s=14, color="0.35", label="never 100%")
            bad = np.asarray(result.outputs["status"], float)[tuple(index)] != 0 if "status" in result.outputs \
                else np.zeros(z.shape, bool)
            if names.index(x) < names.index(y):
                bad = bad.T
            if np.any(bad):
                ax.scatter(X[bad], Yg[bad], marker="s", s=14, facecolors="none", edgecolors="#d55e00",
                           label="non-finite")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
            ax.set_xlabel(LABELS[x])
            ax.set_ylabel(LABELS[y])
            if _is_geometric(xs):
                ax.set_xscale("log")
            if _is_geometric(ys):
                ax.set_yscale("log")
            ax.set_title(TITLES[metric], fontsize=10)
        steps = result.config["steps"]
        kind = "SGD" if result.config.get("batch_size") else "GD"
        fig.suptitle(f"{result.config.get('family')}: {steps} {kind} steps"
                     + (f"; slice at {', '.join(fixed)}" if fixed else ""), fontsize=11)
        figures[f"phase-{x}-{y}"] = fig
    return figures
