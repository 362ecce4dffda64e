"""Experiment driver, files and figures: `run_experiment`, `save_run`, `plot_run`, `reproduce`."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from .. import _io
from . import _predict, _train

# Quick settings: both modes together in under 3 minutes on 2 CPU cores (measured 145 s wall:
# wo2 about 100 s, of which 18 s refine the key memories and 33 s run the particle prediction;
# all about 45 s). Batches of 128 and 32 sequences keep the minibatch noise below the loss
# spikes at large eta (with 16 and 4, every step looked like a spike).
QUICK = dict(wo2=dict(steps=200, batch=128, ds=(64,)), all=dict(steps=200, batch=32, ds=(64,)))
# The paper's runs, ten times longer. Expected time on 2 CPU cores, scaled from the quick runs
# (not measured): wo2 about 12 min, all about 20 min (d = 128 costs about 2x d = 64); a GPU
# brings both to minutes.
FULL = dict(wo2=dict(steps=2000, batch=128, ds=(64,)), all=dict(steps=2000, batch=32, ds=(64, 128)))
PAPER_LRS = dict(wo2=(20.0, 50.0, 100.0, 200.0), all=(2.0, 5.0, 10.0, 20.0))
N_STATS = dict(quick=512, full=4096)


def versions() -> dict:
    import jax

    import particles

    return dict(python=platform.python_version(), jax=jax.__version__, numpy=np.__version__,
                particles=particles.__version__)


def run_experiment(config: _train.Config, *, progress: bool = True, n_stat_sequences: int = 1024) -> dict:
    """Train, predict (wo2) and compare. **Returns:** dict(config, setup, train, prediction, agreement, seconds)."""
    t0 = time.perf_counter()
    s = _train.setup(config, n_stat_sequences=n_stat_sequences)
    out = _train.train(config, s, progress=progress)
    pred, agree = None, None
    memory, agree_memory = None, None
    if config.train == "wo2":
        pred = _predict.predict(s, config.lrs, config.steps, objective=config.objective, kind="pool")
        agree = _predict.agreement(out, pred, config.lrs)
        memory = _predict.predict(s, config.lrs, config.steps, objective=config.objective, kind="memory")
        agree_memory = _predict.agreement(out, memory, config.lrs)
    return dict(config=config, setup=s, train=out, prediction=pred, agreement=agree, memory_prediction=memory,
                agreement_memory=agree_memory, seconds=time.perf_counter() - t0)


def summary(run: dict) -> dict:
    c, out = run["config"], run["train"]
    res = []
    for i, lr in enumerate(c.lrs):
        last = slice(max(0, c.steps - max(1, c.steps // 10)), None)
        res.append(dict(
            lr=float(lr),
            final_loss=float(np.mean(out["loss"][i][last])),
            final_all_loss=float(np.mean(out["all_loss"][i][last])),
            loss_rises=int(_predict.spike_steps(out["loss"][i], rel=0.2).size),
            spikes=_predict.large_spikes(out["loss"][i]).tolist(),
            margin_jumps=_predict.margin_jumps(out["margins_O"][i]).tolist(),
            final_induction_accuracy=float(np.mean(out["induction_accuracy"][i][last])),
            final_probe_loss=float(out["probe_loss"][i][-1]),
            min_margin_O=float(np.min(out["margins_O"][i][-1])),
            median_margin_O=float(np.median(out["margins_O"][i][-1])),
            median_margin_K=float(np.median(out["margins_K"][i][-1])),
            first_bad_step=int(out["first_bad_step"][i]),
        ))
    return dict(config=c.to_dict(), seed=c.seed, versions=versions(), induction_fraction=run["setup"].frac,
                eta_eff_rule=(None if c.train != "wo2" else "eta_eff = eta" if c.objective == "induction"
                              else "eta_eff = induction_fraction * eta"),
                dtype=dict(transformer="float32", prediction="float64"),
                seconds=run["seconds"], results=res, agreement=run["agreement"],
                agreement_memory=run.get("agreement_memory"))


def _atomic_savez(path: str, **arrays) -> None:
    _io.atomic_savez(path, arrays)


def _atomic_json(path: str, obj) -> None:
    _io.write_json(path, obj)


def save_run(run: dict, out_dir: str, name: str) -> dict:
    """Write `<name>.npz` (logged arrays) atomically; returns the run's summary."""
    os.makedirs(out_dir, exist_ok=True)
    arrays = {k: v for k, v in run["train"].items() if isinstance(v, np.ndarray)}
    arrays["lrs"] = np.asarray(run["config"].lrs)
    arrays["p"] = np.asarray(run["setup"].p)
    if run["prediction"] is not None:
        arrays["pred_loss"] = run["prediction"]["loss"]
        arrays["pred_margins"] = run["prediction"]["margins"]
        arrays["eta_eff"] = run["prediction"]["eta_eff"]
    if run.get("memory_prediction") is not None:
        arrays["memory_loss"] = run["memory_prediction"]["loss"]
        arrays["memory_margins"] = run["memory_prediction"]["margins"]
    _atomic_savez(os.path.join(out_dir, f"{name}.npz"), **arrays)
    return summary(run)


def _tokens(run: dict, k: int = 5) -> np.ndarray:
    """Five tokens spread over the frequency range of the copied token (seeded)."""
    p = np.asarray(run["setup"].p)
    order = np.argsort(-p)
    order = order[p[order] > 0]
    return order[np.linspace(0, len(order) - 1, k).round().astype(int)]


def plot_run(runs: list, out_dir: str, name: str) -> list:
    """The paper's panels for one mode; writes `<name>.png` and `<name>.pdf`."""
    import matplotlib

    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mode = runs[0]["config"].train
    ncol = 2 if mode == "wo2" else 3
    fig, axes = plt.subplots(len(runs), ncol, figsize=(4.2 * ncol, 3.2 * len(runs)), squeeze=False)
    for r, run in enumerate(runs):
        c, out, pred = run["config"], run["train"], run["prediction"]
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(c.lrs)))
        ax = axes[r, 0]
        for i, lr in enumerate(c.lrs):
            ax.plot(out["loss"][i], color=colors[i], lw=0.8, label=f"η={lr:g}")
            if pred is not None:
                ax.plot(pred["loss"][i], color=colors[i], lw=1.2, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("iteration (SGD step)")
        ax.set_ylabel("cross-entropy loss (nats)")
        ax.set_title(f"{mode} d={c.d}: loss" + (" (dashed: particles on the pool)" if pred else ""),
                     fontsize=8)
        ax.legend(fontsize=7)
        big = len(c.lrs) - 1
        toks = _tokens(run)
        tc = plt.cm.tab10(np.arange(len(toks)))
        panels = [("margins_O", "W_O² margins")] + ([("margins_K", "W_K² margins")] if mode != "wo2" else [])
        for j, (key, title) in enumerate(panels):
            ax = axes[r, 1 + j]
            for t, col in zip(toks, tc):
                ax.plot(out[key][big][:, t], color=col, lw=0.9, label=f"token {t}")
                if pred is not None and key == "margins_O":
                    ax.plot(pred["margins"][big][:, t], color=col, lw=1.2, ls="--")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xlabel("iteration (SGD step)")
            ax.set_ylabel("margin (correct score − best other)")
            ax.set_title(f"{title}, η={c.lrs[big]:g}" + (" (dashed: particles)" if pred else ""), fontsize=8)
            ax.legend(fontsize=6)
    fig.tight_layout()
    paths = []
    for ext in ("png", "pdf"):
        path = os.path.join(out_dir, f"{name}.{ext}")
        fig.savefig(path, dpi=120)
        paths.append(path)
    plt.close(fig)
    return paths


def reproduce(out_dir: str, quick: bool = True, progress: bool = True) -> dict:
    """Regenerate the paper's Transformer panels (PNG and PDF) into `out_dir`.

    Runs `wo2` (d = 64, η ∈ {20, 50, 100, 200}, with the particle prediction) and `all`
    (η ∈ {2, 5, 10, 20}; d = 64 in quick mode, d ∈ {64, 128} in full mode).

    **Returns:** key numbers: per mode and d, final loss and induction accuracy per η, the
    induction fraction and, for wo2, the agreement with the particle prediction; plus the
    figure paths and timings.
    """
    os.makedirs(out_dir, exist_ok=True)
    settings = QUICK if quick else FULL
    n_stats = N_STATS["quick" if quick else "full"]
    report = dict(quick=quick, figures=[], runs={})
    t0 = time.perf_counter()
    for mode in ("wo2", "all"):
        runs = []
        for d in settings[mode]["ds"]:
            c = _train.Config(train=mode, d=d, lrs=PAPER_LRS[mode], steps=settings[mode]["steps"],
                              batch=settings[mode]["batch"])
            run = run_experiment(c, progress=progress, n_stat_sequences=n_stats)
            s = save_run(run, out_dir, f"transformer_{mode}_d{d}")
            report["runs"][f"{mode}_d{d}"] = dict(
                seconds=s["seconds"], induction_fraction=s["induction_fraction"],
                results=s["results"], agreement=s["agreement"], agreement_memory=s["agreement_memory"])
            runs.append(run)
        report["figures"] += plot_run(runs, out_dir, f"transformer_{mode}")
    report["seconds"] = time.perf_counter() - t0
    _atomic_json(os.path.join(out_dir, "transformer_summary.json"), report)
    return report
