"""The paper's Transformer experiment (§7), in the faithful setting of Bietti et al. (2023).

Trains the two-layer attention-only model on the tiny-shakespeare bigram task with k
triggers (the authors' data, model, initialisation and SGD), logs every step (batch loss,
accuracy, W_O^2 and W_K^2 memory margins) and, when W_O^2 learns alone, overlays the
particle prediction: `particles.gd` and `particles.sgd` on the associative memory that
W_O^2 solves under the frozen matrices, at the same step sizes and weight decay.

Examples:
    python scripts/transformer.py                          (wo2, quick: reduced batch and steps)
    particles-transformer --mode all --full                (the paper's batch 512, 1000 steps)
    python scripts/transformer.py --mode wo2 --start ideal --lr 20,200 --steps 300 --batch 512
    python scripts/transformer.py --reproduce --quick      (every mode and start, with REPORT lines)

Modes: wo2 (W_O^2 alone; the paper's wo2only), all (W_K^1, W_K^2, W_O^2), wo2_identity
(the project's setting before issue #14: identity values, ideal keys, N(0, 1/d) scales),
all6 (all six matrices). Starting points of the key matrices for wo2: random, all (an `all`
run's keys at --start-step), ideal.

Writes OUT/run.npz (a `particles` result: `particles.load`), OUT/summary.json
(configuration, seed, versions, timings, per-step-size numbers, agreement with the
particles) and OUT/transformer_*.png/.pdf; with --reproduce OUT/transformer.npz and
OUT/report.md. The Transformer runs in float32, the particles in float64.

Exit codes: 0 ok, 2 bad flag or input (one line on stderr), 3 numerical failure.
"""

from __future__ import annotations

import os
from typing import Sequence

import particles
import particles.analysis as pa
from particles.transformer import _reproduce as R
from particles.transformer import _train
from particles.transformer._data import DataConfig

from . import _common as c

MODES = ("wo2", "all", "wo2_identity", "all6")


def build_parser():
    p = c.ArgumentParser(prog="transformer.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", default="wo2", help=f"what learns: one of {', '.join(MODES)} (default wo2)")
    p.add_argument("--reproduce", action="store_true",
                   help="run every mode and starting point of the paper's experiment (ignores the run flags)")
    g = p.add_argument_group("data (default: the paper's task)")
    g.add_argument("--data", default="paper", help="paper (tiny-shakespeare counts) or synthetic (pre-#14)")
    g.add_argument("--k", type=int, default=5, help="number of triggers (default 5)")
    g.add_argument("--random-triggers", action="store_true", help="k triggers per sequence ∝ marginal (default: fixed)")
    g.add_argument("--bigram-outputs", action="store_true", help="outputs from the trigger's bigram conditional")
    g.add_argument("--seq-len", type=int, default=256, help="predicted positions T (sequences of T + 1 tokens)")
    m = p.add_argument_group("model (default: the authors')")
    m.add_argument("--d", type=int, default=64, help="embedding dimension (default 64)")
    m.add_argument("--sqrtd-embeddings", action="store_true", help="E, P ~ N(0, 1/d) instead of N(0, 1)")
    m.add_argument("--output-init", default=None, help="U init: linear (uniform ±1/√d) or normal (N(0, 1/d))")
    m.add_argument("--values", default=None, help="random (W_V¹, W_O¹, W_V² at init) or identity")
    m.add_argument("--no-attention-sqrtd", action="store_true", help="do not divide attention logits by √d")
    m.add_argument("--train-embeddings", action="store_true", help="also train E and U (the authors' unfrozen default)")
    o = p.add_argument_group("optimizer and run")
    o.add_argument("--lr", default=None, help="SGD step sizes, comma list (default: the paper's for the mode)")
    o.add_argument("--steps", type=int, default=None, help="SGD steps (default: quick or full preset)")
    o.add_argument("--batch", type=int, default=None, help="sequences per step (paper: 512)")
    o.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0, the paper's nomo runs)")
    o.add_argument("--weight-decay", type=float, default=1e-4, help="SGD weight decay (default 1e-4)")
    o.add_argument("--objective", default="head", help="head (counted positions, the authors' loss) or all")
    o.add_argument("--start", default=None, help="wo2 modes: random, all or ideal key matrices")
    o.add_argument("--start-step", type=int, default=None, help="--start all: step s of the all run (default 300)")
    o.add_argument("--start-lr", type=float, default=10.0, help="--start all: step size of the all run (default 10)")
    o.add_argument("--no-predict", action="store_true", help="skip the particle prediction")
    o.add_argument("--pool", type=int, default=None, help="particles in the prediction pool (default 4000 quick, 12000 full)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="reduced batch and steps (default)")
    size.add_argument("--full", action="store_true", help="the paper's batch 512 and 1000 steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/transformer", help="output folder (default runs/transformer)")
    c.add_common(p)
    return p


def main(argv: Sequence[str]) -> int:
    a = build_parser().parse_args(argv)

    # ---- flags, checked before anything is computed
    c.check(a.mode in MODES, "--mode", a.mode, f"use one of {', '.join(MODES)}")
    c.check(a.data in ("paper", "synthetic"), "--data", a.data, "use paper or synthetic")
    c.check(a.objective in ("head", "all"), "--objective", a.objective, "use head or all")
    c.check(a.start is None or a.start in ("random", "all", "ideal"), "--start", a.start, "use random, all or ideal")
    c.check(a.start is None or a.mode in ("wo2", "wo2_identity"), "--start", a.start,
            "only the W_O^2-only modes (wo2, wo2_identity) take a starting point")
    c.check(a.output_init is None or a.output_init in ("linear", "normal"), "--output-init", a.output_init,
            "use linear or normal")
    c.check(a.values is None or a.values in ("random", "identity"), "--values", a.values, "use random or identity")
    for flag, value, lo in (("--k", a.k, 1), ("--seq-len", a.seq_len, 2), ("--d", a.d, 1), ("--steps", a.steps, 1),
                            ("--batch", a.batch, 1), ("--seed", a.seed, 0), ("--start-step", a.start_step, 0),
                            ("--pool", a.pool, 1)):
        c.check(value is None or value >= lo, flag, value, f"an integer >= {lo}")
    c.check(a.k <= 65, "--k", a.k, "at most the vocabulary size 65")
    c.check(0 <= a.momentum < 1, "--momentum", a.momentum, "a number in [0, 1)")
    c.check(a.weight_decay >= 0 and a.weight_decay < float("inf"), "--weight-decay", a.weight_decay, "a number >= 0")
    c.check(0 < a.start_lr < float("inf"), "--start-lr", a.start_lr, "a number > 0")
    lrs = None if a.lr is None else c.parse_floats("--lr", a.lr, positive=True)
    preset = (R.FULL if a.full else R.QUICK)["all" if a.mode in ("all", "all6") else "wo2"]
    if not a.reproduce:
        # A lower bound on a step's memory: both layers' B x T x T attention weights and their
        # gradients in the backward pass (2 x 2 arrays of 4-byte floats), for every step size
        # trained at once.
        needed = len(lrs or preset["lrs"]) * (a.batch or preset["batch"]) * a.seq_len**2 * 2 * 2 * 4
        c.check_memory(needed, "--batch/--seq-len", "use a smaller --batch or --seq-len, or fewer --lr values")
    out = c.out_folder("--out", a.out)
    if a.quiet:
        os.environ["PARTICLES_QUIET"] = "1"
    bars = c.bars_enabled(a)
    log = c.Log(not (a.quiet or a.json))

    clock = c.Clock()
    if a.reproduce:
        result = R.reproduce(out, quick=not a.full, progress=bars, seed=a.seed)
        runs = result.runs
        files = [os.path.join(out, "transformer.npz")]
    else:
        if a.data == "paper":
            data = DataConfig.paper(a.k, not a.random_triggers, seq_len=a.seq_len, bigram_outputs=a.bigram_outputs)
        else:
            c.check(not a.bigram_outputs, "--bigram-outputs", True, "only with --data paper")
            data = DataConfig.synthetic(a.seed, k=a.k, seq_len=a.seq_len)
        trainable = None
        if a.train_embeddings:
            trainable = _train.MODES[a.mode].trainable + ("E", "U")
        cfg = _train.Config(
            mode=a.mode, data=data, d=a.d, lrs=tuple(lrs or preset["lrs"]), steps=a.steps or preset["steps"],
            batch=a.batch or preset["batch"], momentum=a.momentum, weight_decay=a.weight_decay, objective=a.objective,
            start=a.start,
            start_step=a.start_step if a.start_step is not None else R.START_FROM_ALL["quick_step" if not a.full
                                                                                       else "full_step"],
            start_lr=a.start_lr, sqrtd_embeddings=True if a.sqrtd_embeddings else None, output_init=a.output_init,
            values=a.values, attention_sqrtd=not a.no_attention_sqrtd, trainable=trainable, seed=a.seed)
        pool = dict(R.POOL["full" if a.full else "quick"])
        if a.pool:
            pool["n_particles"] = a.pool
        # particles.sgd (minibatch noise) costs batch x pool draws a step: with --full only.
        run = R.run(cfg, pool=pool, predict=not a.no_predict, sgd=a.full, progress=bars)
        runs = {a.mode: run}
        result = run
        files = [os.path.join(out, "run.npz")]
        particles.save(files[0], run, extra=dict(argv=list(argv)))

    figures, note = c.safe_call(pa.plot_transformer_runs, result, out)
    files += figures or []
    lines, note2 = c.safe_call(pa.transformer_report_section, result)
    if lines:
        c.write_text(os.path.join(out, "report.md"), "\n".join(lines) + "\n")
        files.append(os.path.join(out, "report.md"))
    summary = dict(config={n: r.config for n, r in runs.items()}, seed=a.seed, versions=c.versions(),
                   seconds=clock(), results={n: r.results() for n, r in runs.items()},
                   agreement={n: r.info.get("agreement") for n, r in runs.items()},
                   info={n: {k: v for k, v in r.info.items() if k != "agreement"} for n, r in runs.items()},
                   files=[os.path.basename(f) for f in files], notes=[x for x in (note, note2) if x])
    c.write_json(os.path.join(out, "summary.json"), summary)
    if a.json:
        import json

        print(json.dumps(c.jsonable(summary), indent=2))
    for name, r in runs.items():
        log(f"{r.label}: {r.config['data']['name']} data, d={r.config['d']}, batch {r.config['batch']}, "
            f"{r.steps} steps, {r.info['seconds']['total']:.0f} s")
        for res, ag in zip(r.results(), r.info.get("agreement") or [None] * len(r.lrs)):
            line = (f"  eta={res['lr']:g}: final loss {res['final_loss']:.3g}, accuracy {res['final_accuracy']:.3f}, "
                    f"loss spikes at {res['spikes'] or 'none'}, W_O2 margin jumps {len(res['margin_jumps'])}")
            if ag:
                line += f"; particles: margin corr {ag['margin_corr']:.2f}, MAE {ag['margin_mae']:.3g}"
            log(line)
    log(f"wrote {', '.join(os.path.basename(f) for f in files)} and summary.json to {out} ({clock():.0f} s)")
    bad = [(n, res) for n, r in runs.items() for res in r.results() if res["first_bad_step"] >= 0]
    if bad:
        raise c.NumericalError("non-finite loss: " + ", ".join(f"{n} eta={res['lr']:g} at step {res['first_bad_step']}"
                                                               for n, res in bad))
    return 0


def entry() -> None:
    c.entry(main, "transformer.py")


if __name__ == "__main__":
    entry()
