"""The paper's Transformer validation: Bietti et al.'s two-layer attention-only model.

Trains with SGD (no momentum) on bigram sequences with in-context trigger -> output pairs,
logs every step (loss, induction accuracy, W_O^2 and W_K^2 memory margins) and, for
`--train wo2`, overlays the particle prediction: `particles.gd` on the associative memory
that W_O^2 faces (exact on a pool of sampled induction positions), at the same eta.

Examples:
    python scripts/transformer.py --train wo2 --quick --out runs/transformer
    python scripts/transformer.py --train all --d 128 --lr 2,5,10,20 --full

Timings on 2 shared CPU cores (float32 Transformer, float64 prediction): see
particles/transformer/_reproduce.py (QUICK/FULL) for the measured numbers.

Exit codes: 0 ok, 2 bad input, 3 numerical failure (a non-finite loss).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

DEFAULT_LRS = {"wo2": "20,50,100,200", "all": "2,5,10,20", "all6": "2,5,10,20"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _bad(flag, value, allowed):
    print(f"error: {flag}={value!r} is not allowed: {allowed}.", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> int:
    ap = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", default="wo2",
                    help="wo2 (only W_O^2 of layer 2), all (W_K^1, W_K^2, W_O^2, the authors' trainable set) "
                         "or all6 (all six matrices)")
    ap.add_argument("--objective", default="induction",
                    help="induction (mean CE over induction positions, the authors' loss) or all (every position)")
    ap.add_argument("--d", type=int, default=64, help="embedding dimension (default 64)")
    ap.add_argument("--lr", default=None, help="comma list of SGD step sizes (default: the paper's set)")
    ap.add_argument("--steps", type=int, default=None, help="SGD steps")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refine-steps", type=int, default=None,
                    help="wo2: Adam steps refining each ideal key memory (default: Config's)")
    ap.add_argument("--text", default=None, help="text file for character-level statistics")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="quick settings (default)")
    mode.add_argument("--full", action="store_true", help="the paper's run lengths")
    ap.add_argument("--out", default="runs/transformer")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--json", action="store_true", help="print summary.json to stdout")
    a = ap.parse_args(argv)

    if a.train not in ("wo2", "all", "all6"):
        _bad("--train", a.train, "use wo2, all or all6")
    if a.objective not in ("induction", "all"):
        _bad("--objective", a.objective, "use induction or all")
    try:
        lrs = tuple(float(x) for x in (a.lr or DEFAULT_LRS[a.train]).split(","))
    except ValueError:
        _bad("--lr", a.lr, "a comma list of positive numbers, e.g. 20,50")
    if not all(x > 0 and x < float("inf") for x in lrs):
        _bad("--lr", a.lr, "a comma list of positive numbers, e.g. 20,50")
    for flag, value, lo in (("--d", a.d, 1), ("--steps", a.steps, 1), ("--batch", a.batch, 1),
                            ("--seq-len", a.seq_len, 2), ("--seed", a.seed, 0),
                            ("--refine-steps", a.refine_steps, 0)):
        if value is not None and value < lo:
            _bad(flag, value, f"an integer >= {lo}")
    if a.text is not None and not os.path.isfile(a.text):
        _bad("--text", a.text, "an existing text file")
    if a.quiet:
        os.environ["PARTICLES_QUIET"] = "1"

    from particles.transformer import _reproduce as R
    from particles.transformer._train import Config

    preset = (R.FULL if a.full else R.QUICK)["all" if a.train == "all6" else a.train]
    try:
        config = Config(train=a.train, d=a.d, lrs=lrs, steps=a.steps or preset["steps"],
                        batch=a.batch or preset["batch"], seq_len=a.seq_len, seed=a.seed, text=a.text,
                        objective=a.objective,
                        **({} if a.refine_steps is None else dict(refine_steps=a.refine_steps)))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n_stats = R.N_STATS["full" if a.full else "quick"]
    try:
        run = R.run_experiment(config, progress=not a.quiet, n_stat_sequences=n_stats)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    name = f"transformer_{a.train}_d{a.d}"
    summ = R.save_run(run, a.out, "logs")
    summ["figures"] = R.plot_run([run], a.out, name)
    R._atomic_json(os.path.join(a.out, "summary.json"), summ)
    if a.json:
        print(json.dumps(summ, indent=2))
    elif not a.quiet:
        for r in summ["results"]:
            print(f"eta={r['lr']:g}: loss {r['final_loss']:.4g}, induction accuracy "
                  f"{r['final_induction_accuracy']:.3f}, median W_O2 margin {r['median_margin_O']:.3g}")
        for g, m in zip(summ["agreement"] or [], summ["agreement_memory"] or []):
            print(f"eta={g['lr']:g} (eta_eff={g['eta_eff']:.3g}): W_O2 margins vs particles (pool) corr "
                  f"{g['margin_corr']:.3f}, MAE {g['margin_mae']:.3g}; (token memory) corr {m['margin_corr']:.3f}")
        print(f"wrote {a.out}/summary.json, logs.npz, {name}.png/.pdf")
    bad = [r for r in summ["results"] if r["first_bad_step"] >= 0]
    if bad:
        print("error: non-finite loss for eta=" + ",".join(f"{r['lr']:g} (step {r['first_bad_step']})" for r in bad),
              file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
