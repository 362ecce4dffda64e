"""One experiment as a saved result ([`run`][] -> [`Run`][]) and the paper's experiments
([`reproduce`][] -> [`Reproduction`][])."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Optional

import jax
import numpy as np

from .. import _results
from . import _predict, _train

from ._outcomes import WINDOW, Reproduction, Run, _path_ratio  # noqa: F401  (re-exported)

# ----------------------------------------------------------------- settings
PAPER_LRS = dict(wo2=(20.0, 50.0, 100.0, 200.0), all=(2.0, 5.0, 10.0, 20.0))
# The paper's batch and optimizer (the authors' defaults, momentum off as in their `nomo` runs).
PAPER = dict(batch=512, momentum=0.0, weight_decay=1e-4, d=64)
# `--full`: 1000 steps, the run length of the authors' README example (the paper's own
# length is not public); about 2 hours on 2 cores (BENCHMARKS.md), the runs of REPORT.md.
# Quick: reduced batch and steps so that both modes finish in seconds on 2 CPU cores
# (2 minutes for every mode and start); every reduction is written into the result and
# the figures.
FULL = dict(wo2=dict(steps=1000, batch=512, lrs=PAPER_LRS["wo2"]), all=dict(steps=1000, batch=512, lrs=PAPER_LRS["all"]))
QUICK = dict(wo2=dict(steps=120, batch=64, lrs=PAPER_LRS["wo2"]), all=dict(steps=40, batch=16, lrs=PAPER_LRS["all"]))
# `--claims`: a shorter subset of `--full` at the paper's batch and step sizes, W_O^2 alone
# from random keys (the paper's wo2only) and from the ideal memories (500 and 250 steps:
# about 35 minutes on 2 cores instead of two hours).
CLAIMS = dict(wo2_random=500, wo2_ideal=250)
# The `all` run whose key matrices start the `wo2` run labelled "all@s".
START_FROM_ALL = dict(lr=10.0, full_step=300, quick_step=40)
# Prediction pools: the dense Gram matrix of n particles costs 8 n^2 bytes.
POOL = dict(full=dict(n_sequences=512, n_particles=12000), quick=dict(n_sequences=128, n_particles=4000))



# ----------------------------------------------------------------- one experiment
def run(config: _train.Config, *, label: Optional[str] = None, p0=None, predict: bool = True,
        pool: Optional[dict] = None, sgd: bool = True, progress: bool = False) -> Run:
    """Train (every step size), and for the W_O^2-only modes predict W_O^2 with particles.

    **Arguments:**

    - `config`: the [`Config`][].
    - `label`: a short name for figures and tables (default: mode and start).
    - `p0`: starting weights (default [`initial_params`][]).
    - `predict`: run the particle prediction (W_O^2-only modes).
    - `pool`: `n_sequences`, `n_particles` of the prediction pool (default: 256, 8000).
    - `sgd`: also run `particles.sgd` with the batch's number of counted positions.

    **Returns:** a [`Run`][].

    >>> from particles.transformer import DataConfig
    >>> cfg = _train.Config(d=8, lrs=(1.0,), steps=2, batch=2, data=DataConfig.paper(seq_len=8))
    >>> run(cfg, pool=dict(n_sequences=8, n_particles=None)).pred_margins.shape
    (1, 3, 65)
    """
    t0 = time.perf_counter()
    p0 = _train.initial_params(config, progress=progress) if p0 is None else p0
    t_init = time.perf_counter() - t0
    out = _train.train(config, p0, progress=progress)
    info = dict(seconds=dict(init=t_init, train=out["seconds"]))
    kw = {}
    if predict and config.trainable_names == ("WO2",):
        t1 = time.perf_counter()
        pool = {**dict(n_sequences=256, n_particles=8000), **(pool or {})}
        problem, pinfo = _predict.memory_problem(config.data, p0, objective=config.objective,
                                                 sqrtd=config.attention_sqrtd, **pool)
        # Positions per SGD step: the counted positions of one Transformer batch.
        sgd_batch = max(1, round(pinfo["per_sequence"] * config.batch)) if sgd else None
        pred = _predict.predict(problem, config.lrs, config.steps, sgd_batch=sgd_batch, seed=config.seed,
                                weight_decay=config.weight_decay)
        info["sharpness"] = _predict.sharpness(problem)
        info["n_pool"] = pinfo["n_pool"]
        info["sgd_batch"] = pred.get("sgd_batch_used")
        info["sgd_pool"] = pred.get("sgd_pool")
        info["transformer_positions_per_batch"] = sgd_batch
        info["agreement"] = _predict.agreement(out["loss"], out["margins_O"], pred, config.lrs)
        info["seconds"]["predict"] = time.perf_counter() - t1
        kw = dict(pred_loss=pred["loss"], pred_margins=pred["margins"], sgd_loss=pred.get("sgd_loss"),
                  sgd_margins=pred.get("sgd_margins"), copied=pinfo["copied"])
    info["seconds"]["total"] = time.perf_counter() - t0
    names = config.trainable_names
    final = {n: np.asarray(getattr(out["params"], n)) for n in names}
    snaps = {s: {n: np.asarray(getattr(p, n)) for n in ("WK1", "WK2")} for s, p in out["snapshots"].items()}
    key_tokens = config.key_tokens()
    return Run(config=config.to_dict(), label=label or (config.mode + (f" from {config.start} keys" if config.start
                                                                      else "")),
               lrs=np.asarray(config.lrs), loss=out["loss"], head_loss=out["head_loss"], accuracy=out["accuracy"],
               margins_O=out["margins_O"], margins_K=out["margins_K"],
               key_tokens=np.arange(config.data.N) if key_tokens is None else key_tokens,
               first_bad_step=out["first_bad_step"], final=final, snapshots=snaps, info=info, **kw)


# ----------------------------------------------------------------- the paper's experiments
def settings(quick: bool) -> dict:
    """The settings of [`reproduce`][]: per run name, the [`Config`][] fields and label."""
    S = QUICK if quick else FULL
    s_all = START_FROM_ALL["quick_step" if quick else "full_step"]
    wo2 = dict(steps=S["wo2"]["steps"], batch=S["wo2"]["batch"], lrs=S["wo2"]["lrs"])
    lrs_all = S["all"]["lrs"]
    return {
        "all": dict(config=dict(mode="all", snapshot_steps=(s_all,), **S["all"]), label="all (W_K¹, W_K², W_O²)"),
        "wo2_random": dict(config=dict(mode="wo2", start="random", **wo2), label="wo2 from random keys"),
        "wo2_from_all": dict(config=dict(mode="wo2", start="all", start_step=s_all, start_lr=START_FROM_ALL["lr"],
                                         **wo2), label=f"wo2 from all@{s_all} keys (η={START_FROM_ALL['lr']:g})",
                             from_all=lrs_all.index(START_FROM_ALL["lr"])),
        "wo2_ideal": dict(config=dict(mode="wo2", start="ideal", **wo2), label="wo2 from ideal keys"),
        "wo2_identity": dict(config=dict(mode="wo2_identity", **wo2), label="wo2_identity (pre-#14 setting)"),
    }


def reproduce(out_dir: Optional[str] = None, quick: bool = True, progress: bool = False, *,
              seed: int = 0, claims: bool = False) -> Reproduction:
    """Run the paper's Transformer experiments in the faithful setting; save them.

    `all` (W_K^1, W_K^2, W_O^2 learn) and `wo2` (W_O^2 alone) from three labelled starting
    points: random key matrices (the paper's `wo2only`), the key matrices of the `all` run
    at step s, and the ideal key memories; plus `wo2_identity`, the project's setting before
    issue #14, to show where its spikes came from. Every W_O^2 run carries the particle
    prediction (`particles.gd`, and with `quick=False` also `particles.sgd`, at the same η).

    **Arguments:** `out_dir` (when given, the result is written to `out_dir/transformer.npz`),
    `quick` (reduced batch, steps and step sizes: see `QUICK`; False: the paper's batch
    512 and the 1000 steps of `FULL`: the runs of REPORT.md), `progress` (bars on stderr),
    `seed`, `claims` (only the runs of `CLAIMS`, at the paper's batch and step sizes, for
    their steps: a shorter subset of `quick=False`; overrides `quick`).

    **Returns:** a [`Reproduction`][]; plot it with `particles.analysis.plot_transformer_runs`
    and describe it with `particles.analysis.transformer_report_section`.
    """
    t0 = time.perf_counter()
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    quick = quick and not claims
    pool = POOL["quick" if quick else "full"]
    runs, seconds = {}, {}
    chosen = settings(quick)
    if claims:
        chosen = {n: dict(s, config=dict(s["config"], steps=CLAIMS[n])) for n, s in chosen.items() if n in CLAIMS}
    for name, spec in chosen.items():
        t1 = time.perf_counter()
        cfg = _train.Config(seed=seed, **spec["config"])
        p0 = None
        if "from_all" in spec:
            snap = runs["all"].snapshots[cfg.start_step]
            base = _train.initial_params(dataclasses.replace(cfg, start="random"))
            p0 = base.replace(**{k: jax.numpy.asarray(snap[k][spec["from_all"]]) for k in ("WK1", "WK2")})
        # particles.sgd costs (batch x pool) Gumbel draws a step: the paper-setting runs only.
        runs[name] = run(cfg, label=spec["label"], p0=p0, pool=pool, sgd=not quick, progress=progress)
        seconds[name] = time.perf_counter() - t1
    seconds["total"] = time.perf_counter() - t0
    reduced = dict(QUICK=QUICK, paper=dict(PAPER, lrs=PAPER_LRS)) if quick else None
    rep = Reproduction(runs=runs, quick=quick, info=dict(seconds=seconds, reduced=reduced, pool=pool, claims=claims,
                                                         settings={n: s["label"] for n, s in chosen.items()}))
    if out_dir is not None:
        _results.save(os.path.join(out_dir, "transformer.npz"), rep, extra=dict(seed=seed))
    return rep
