"""Figures of the Transformer experiment (§7); its REPORT section is `_transformer_report`.

The library computes ([`particles.transformer.reproduce`][], [`particles.transformer.Run`][]);
this module draws: [`figures`][] and [`plot_runs`][] (figure files).
"""

from __future__ import annotations

import os
import textwrap

import numpy as np

from ._plots import OKABE_ITO

def _is_reproduction(result) -> bool:
    return hasattr(result, "runs")


def _runs(result) -> dict:
    return dict(result.runs) if _is_reproduction(result) else {result.config.get("mode", "run"): result}


def setting(run) -> str:
    """The exact setting of a run, in one line (for titles)."""
    c = run.config
    m, dd = c["model"], c["data"]
    trig = f"k={dd['k']} {'fixed' if dd['fixed_triggers'] else 'random'} triggers"
    return (f"{dd['name']} data (T={dd['seq_len']}, {trig}, {dd['outputs']} outputs); d={m['d']}, "
            f"E,P~N(0,{'1/d' if m['sqrtd_embeddings'] else '1'}), U {m['output_init']}, values {m['values']}; "
            f"SGD batch {c['batch']}, momentum {c['momentum']:g}, wd {c['weight_decay']:g}; trains "
            f"{'+'.join(c['trainable'])}")


def _tokens(run, k: int = 5) -> np.ndarray:
    """k tokens spread over the frequency range of the copied token."""
    N = run.margins_O.shape[-1]
    if run.copied is None:
        return np.linspace(0, N - 1, k).round().astype(int)
    q = np.asarray(run.copied)
    order = np.argsort(-q, kind="stable")
    order = order[q[order] > 0] if np.any(q > 0) else order
    return order[np.linspace(0, len(order) - 1, min(k, len(order))).round().astype(int)]


def _figure(nrows: int, ncols: int, width: float, height: float):
    # A bare Figure (no pyplot state): the experiment harness and the script both save it.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _finite(a):
    a = np.asarray(a, np.float64)
    return np.where(np.isfinite(a), a, np.nan)


def run_figure(run):
    """One run's figure: per step size, the loss (top) and W_O^2 margins (bottom) against
    iterations, with the particle prediction dashed (gd) and dotted (sgd) when present;
    runs without a prediction (`all`) get a third row with the W_K^2 margins over the triggers.
    **Returns:** a matplotlib Figure.
    """
    L = len(run.lrs)
    rows = 2 if run.pred_loss is not None else 3
    fig, axes = _figure(rows, L, 3.6 * L, 2.8 * rows + 0.8)
    toks = _tokens(run)
    chars = _chars()
    res = run.results()
    for i, lr in enumerate(run.lrs):
        ax = axes[0, i]
        ax.plot(_finite(run.loss[i]), color="0.25", lw=0.7, label="Transformer (batch)")
        if run.pred_loss is not None:
            ax.plot(run.pred_loss[i], color=OKABE_ITO[1], lw=1.4, ls="--", label="particles gd (pool)")
        if run.sgd_loss is not None:
            ax.plot(run.sgd_loss[i], color=OKABE_ITO[0], lw=1.0, ls=":", label="particles sgd")
        for k in res[i]["spikes"]:
            ax.axvline(k, color=OKABE_ITO[3], lw=0.6, alpha=0.6)
        ax.set_title(f"η = {lr:g}", fontsize=9)
        ax.set_xlabel("iteration (SGD step)")
        ax.set_ylabel("cross-entropy, counted positions (nats)", fontsize=7)
        top = np.nanmax(_finite(run.loss[i])) if np.isfinite(_finite(run.loss[i])).any() else 5.5
        ax.set_ylim(0, max(5.5, min(12.0, float(top) * 1.05)))
        if i == 0:
            ax.legend(fontsize=6, loc="upper right")
        ax = axes[1, i]
        for t, col in zip(toks, OKABE_ITO):
            lab = repr(chars[t]) if chars and t < len(chars) else str(t)
            ax.plot(_finite(run.margins_O[i][:, t]), color=col, lw=0.9, label=f"token {lab}")
            if run.pred_margins is not None:
                ax.plot(run.pred_margins[i][:, t], color=col, lw=1.2, ls="--")
        ax.axhline(0, color="k", lw=0.4)
        ax.set_xlabel("iteration (SGD step)")
        ax.set_ylabel("W_O² margin", fontsize=7)
        if i == 0:
            ax.legend(fontsize=6, loc="lower right",
                      title="solid: Transformer" + ("; dashed: particles gd" if run.pred_margins is not None else ""),
                      title_fontsize=6)
        if rows == 3:
            ax = axes[2, i]
            m = _finite(run.margins_K[i])
            for j in range(min(m.shape[1], 5)):
                t = int(run.key_tokens[j])
                lab = repr(chars[t]) if chars and t < len(chars) else str(t)
                ax.plot(m[:, j], color=OKABE_ITO[j], lw=0.9, label=f"token {lab}")
            ax.axhline(0, color="k", lw=0.4)
            ax.set_xlabel("iteration (SGD step)")
            ax.set_ylabel("W_K² margin" + (" (over the triggers)" if len(run.key_tokens) < 65 else ""), fontsize=7)
            if i == 0:
                ax.legend(fontsize=6)
    fig.suptitle(f"{run.label}\n" + textwrap.fill(setting(run), max(60, int(27 * L))), fontsize=8)
    return fig


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_").lower()[:40]


def _chars():
    try:
        from particles.transformer import char_stats

        return char_stats()["characters"]
    except Exception:  # the figure does not need the labels
        return None


def figures(result) -> dict:
    """{name: matplotlib Figure} for a [`Run`][particles.transformer.Run] or a
    [`Reproduction`][particles.transformer.Reproduction]: one figure per run
    ("transformer_<name>"), and for a reproduction an overview of the W_O^2 runs' losses.

    >>> from particles.transformer import Run
    >>> sorted(figures(Run.empty_for_doc()))
    ['transformer_wo2']
    """
    out = {f"transformer_{name}": run_figure(run) for name, run in _runs(result).items()}
    if _is_reproduction(result):
        fig = _overview(result)
        if fig is not None:
            out["transformer_overview"] = fig
    return out


def plot_runs(result, out_dir: str) -> list:
    """Save every figure of [`figures`][] as PNG and PDF in `out_dir`, atomically
    (non-finite points of a diverged run are left out of the curves, not drawn as zeros).

    **Returns:** the file paths.

    >>> import tempfile
    >>> from particles.transformer import Run
    >>> len(plot_runs(Run.empty_for_doc(), tempfile.mkdtemp()))
    2
    """
    from particles.cli._common import save_figure

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, fig in figures(result).items():
        for ext in ("png", "pdf"):
            path = os.path.join(out_dir, f"{name}.{ext}")
            save_figure(fig, path, dpi=110)
            paths.append(path)
    return paths


def _overview(rep):
    runs = [(n, r) for n, r in rep.runs.items() if r.pred_loss is not None]
    if not runs:
        return None
    fig, axes = _figure(1, len(runs), 3.8 * len(runs), 3.4)
    for ax, (name, r) in zip(axes[0], runs):
        for i, lr in enumerate(r.lrs):
            col = OKABE_ITO[i % len(OKABE_ITO)]
            ax.plot(_finite(r.loss[i]), color=col, lw=0.7, label=f"η={lr:g}")
            ax.plot(r.pred_loss[i], color=col, lw=1.2, ls="--")
        ax.axhspan(2.4, 5.0, color="0.9", zorder=0)
        ax.set_title(r.label, fontsize=8)
        ax.set_xlabel("iteration (SGD step)")
        ax.set_ylabel("loss (solid: Transformer, dashed: particles)", fontsize=7)
        ax.set_ylim(0, 6)
        ax.legend(fontsize=6)
    fig.suptitle("W_O²-only runs: loss per η (grey band: the paper's plotted range 2.4–5)"
                 + (" — QUICK: reduced batch and steps" if rep.quick else " — batch 512, d = 64"), fontsize=8)
    return fig
