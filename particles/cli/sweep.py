"""Phase diagrams of gradient descent on associative memories: sweep a grid of settings.

Each grid cell runs --steps of GD (or SGD with --sgd-batch) on a problem family and records
the events of the run (`particles.METRICS`): the first step of full accuracy (-1: never),
the step after which it stays full, loss increases and spikes, the largest spike, the final
loss and smallest margin, margin oscillations and sign flips.

Families (--geometry): equicorrelated (n unit inputs with pairwise correlation --corr,
orthonormal outputs, f*(x) = x), two_particles (the paper's 2-D system), sphere (random
unit-sphere embeddings from --seed, sizes --n, --m, --d, f*(x) = x mod m). Frequencies:
--p1, --log-odds or --zipf (default Zipf(1)). Each axis takes a comma list or
linspace:a:b:k / logspace:a:b:k (base 10), e.g.

    python scripts/sweep.py --corr linspace:0.5:1:10 --lr logspace:-1:1:10 --log-odds linspace:0.3:3:10
    python scripts/sweep.py --n 5 --corr 0.5 --zipf linspace:0:3:13 --lr 1,10

The grid runs as one compiled, vmapped call per chunk (the whole grid when it fits in
memory), sharded over every JAX device; OUT/sweep-partial.npz holds the finished chunks
so that an interrupted sweep continues with --resume. Writes OUT/sweep.npz (read it with
`particles.load`), OUT/sweep.json and OUT/phase-<a>-<b>.png for each pair of swept axes.
"""

from __future__ import annotations

import os
import shlex
from typing import Sequence

import jax
import numpy as np

import particles
from particles import _families, _sweep

from . import _common as c

DEFAULTS = {"lr": "logspace:-1:1:10", "corr": "0.5"}
PARTIAL = "sweep-partial.npz"


def build_parser():
    p = c.ArgumentParser(prog="sweep.py", description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("grid axes (comma list, linspace:a:b:k or logspace:a:b:k)")
    g.add_argument("--geometry", choices=sorted(particles.FAMILIES), default="equicorrelated",
                   help="problem family (default %(default)s)")
    g.add_argument("--lr", default=DEFAULTS["lr"], help="learning rates (default %(default)s)")
    g.add_argument("--corr", help="pairwise input correlation (equicorrelated, two_particles; default 0.5)")
    g.add_argument("--p1", help="frequency of input 1; the others share the rest equally")
    g.add_argument("--log-odds", dest="log_odds", help="log(p1/p2); the other inputs have p2")
    g.add_argument("--zipf", help="Zipf exponents a: p(x) ∝ x^-a (the default law, a = 1)")
    g.add_argument("--n", help="number of inputs (equicorrelated: default 2; sphere: default 8)")
    g.add_argument("--m", help="number of outputs (sphere; default n)")
    g.add_argument("--d", help="embedding dimension (sphere; default n)")
    g.add_argument("--seed", default="0", help="seeds (SGD batches, random init, sphere embeddings) (default 0)")
    p.add_argument("--steps", type=int, default=1000, help="GD steps per cell (default %(default)s)")
    p.add_argument("--metrics", help=f"comma list among {', '.join(particles.METRICS)} (default all)")
    p.add_argument("--sgd-batch", type=int, help="minibatch SGD with this batch size instead of GD")
    p.add_argument("--init-std", type=float, default=0.0, help="random initial scores N(0, s^2) (default 0)")
    p.add_argument("--chunk-size", type=int, help="cells per compiled call (default: all that fit in memory)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --out")
    p.add_argument("--out", help="output folder (default sweeps/<timestamp>)")
    p.add_argument("--no-plot", action="store_true", help="skip the phase-diagram PNGs")
    d = p.add_argument_group("several processes (one per host or GPU; see README, 'Beyond one machine')")
    d.add_argument("--distributed", action="store_true", help="join a cluster's processes (SLURM: detected)")
    d.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (with the two flags below)")
    d.add_argument("--num-processes", type=int, help="how many processes run this sweep")
    d.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes - 1")
    c.add_common(p)
    return p


def parse_axes(args) -> dict:
    family = particles.FAMILIES[args.geometry]
    axes = {"lr": c.parse_floats("--lr", args.lr, positive=True)}
    corr = args.corr if args.corr is not None or "corr" not in family.value_axes else DEFAULTS["corr"]
    flags = dict(corr=corr, p1=args.p1, log_odds=args.log_odds, zipf=args.zipf, n=args.n, m=args.m, d=args.d)
    for name, text in flags.items():
        if text is None:
            continue
        flag = "--" + name.replace("_", "-")
        c.check(name in family.value_axes + family.shape_axes, flag, text,
                f"the {family.name} family takes {', '.join(family.shape_axes + family.value_axes)}")
        if name in ("n", "m", "d"):
            axes[name] = c.parse_ints(flag, text, minimum=2 if name == "n" else 1)
        else:
            axes[name] = c.parse_floats(flag, text)
    laws = [k for k in ("p1", "log_odds", "zipf") if k in axes]
    c.check(len(laws) <= 1, "--" + laws[-1].replace("_", "-") if laws else "--p1", "",
            "give one frequency law: --p1, --log-odds or --zipf")
    axes["seed"] = c.parse_ints("--seed", args.seed, minimum=0)
    c.check(args.steps >= 1, "--steps", args.steps, "an integer >= 1")
    c.check(args.sgd_batch is None or args.sgd_batch >= 1, "--sgd-batch", args.sgd_batch, "an integer >= 1")
    c.check(args.init_std >= 0 and np.isfinite(args.init_std), "--init-std", args.init_std, "a number >= 0")
    c.check(args.chunk_size is None or args.chunk_size >= 1, "--chunk-size", args.chunk_size, "an integer >= 1")
    args.metric_names = particles.METRICS if args.metrics is None else tuple(args.metrics.split(","))
    bad = [m for m in args.metric_names if m not in particles.METRICS]
    c.check(not bad, "--metrics", args.metrics, f"names among {', '.join(particles.METRICS)}")
    return axes


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    axes = parse_axes(args)
    if args.distributed or args.coordinator is not None:
        from particles import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        if not distributed.is_main():  # the other processes compute their share silently
            args.quiet, args.no_plot = True, True
    family = particles.FAMILIES[args.geometry]
    largest = {k: max(axes[k]) for k in ("n", "m", "d") if k in axes}
    flags = "/".join(f"--{k}" for k in ("n", "m", "d") if k in family.shape_axes)
    c.check_memory(_sweep.cell_bytes(_families.shapes_of(family, largest)), flags or "--n",
                   f"one cell needs this much (its N×N Gram and N×M scores in float64): use smaller {flags or '--n'}, "
                   "or particles.gd_vocab for vocabulary-scale memories")
    if args.resume:
        c.check(args.out is not None and os.path.exists(os.path.join(args.out, PARTIAL)), "--resume", args.out,
                "--resume needs --out naming the folder of an interrupted sweep (it holds sweep-partial.npz)")
    out = c.out_folder("--out", args.out or os.path.join("sweeps", c.timestamp()))
    clock = c.Clock()
    log = c.Log(not (args.quiet or args.json))
    cells = int(np.prod([len(v) for v in axes.values()]))
    log(f"sweep: {cells} cells of the {args.geometry} family over "
        + ", ".join(f"{k} ({len(v)})" for k, v in axes.items())
        + f"; {args.steps} {'SGD' if args.sgd_batch else 'GD'} steps each -> {out}")
    partial = os.path.join(out, PARTIAL)
    try:
        result = particles.sweep(args.geometry, axes, args.steps, metrics=args.metric_names,
                                 batch_size=args.sgd_batch, init_std=args.init_std, chunk_size=args.chunk_size,
                                 checkpoint=partial, resume=args.resume, progress=c.bars_enabled(args))
    except KeyboardInterrupt:
        again = " ".join(shlex.quote(a) for a in argv if a != "--resume")
        if "--out" not in argv:
            again += f" --out {shlex.quote(out)}"
        kept = "the finished chunks are kept in " + partial if os.path.exists(partial) else "no chunk had finished"
        raise c.Interrupted(f"interrupted; {kept}; continue with: python scripts/sweep.py {again} --resume") from None
    if jax.process_index() != 0:
        return 0  # process 0 writes the files
    result.save(os.path.join(out, "sweep.npz"), extra=dict(config=c.config_of(args)))
    if os.path.exists(partial):
        os.unlink(partial)
    figures = [] if args.no_plot else _figures(result, out, log)
    summary = dict(
        config=c.config_of(args), sweep=result.config, axes=result.axes, shape=list(result.shape),
        metrics=list(result.outputs), stats={m: _stats(a) for m, a in result.outputs.items()},
        non_finite_cells=result.n_bad,
        chunks=dict(computed=result.chunks_computed, total=result.chunks_total, resumed=args.resume),
        outputs=result.outputs if cells <= 20000 else "see sweep.npz",
        files=["sweep.npz", "sweep.json", *figures], versions=c.versions(), wall_time_s=round(clock(), 3),
    )
    c.write_json(os.path.join(out, "sweep.json"), summary)
    if args.json:
        import json

        print(json.dumps(c.jsonable(summary)))
        return 0
    if "first_full_accuracy" in result.outputs:
        ffa = result.outputs["first_full_accuracy"]
        log(f"cells reaching 100% accuracy: {int(np.sum(ffa >= 0))}/{cells}")
    if "max_spike" in result.outputs:
        log(f"largest spike {np.nanmax(result.outputs['max_spike']):.4g} nats")
    log(f"non-finite cells: {result.n_bad}", f"wrote {out}/sweep.npz, sweep.json"
        + (f" and {len(figures)} figure(s)" if figures else ""), f"wall time {clock():.2f} s")
    return 0


def _figures(result, out, log) -> list:
    from particles.analysis import phase_diagrams

    figures = phase_diagrams(result)
    if not figures:
        log("(phase diagrams need two swept axes; none drawn)")
    for name, fig in figures.items():
        c.save_figure(fig, os.path.join(out, f"{name}.png"))
    return [f"{name}.png" for name in figures]


def _stats(a):
    a = np.asarray(a, dtype=float)
    fin = a[np.isfinite(a)]
    return dict(min=float(fin.min()) if fin.size else None, max=float(fin.max()) if fin.size else None,
                non_finite=int(a.size - fin.size))


def entry() -> None:
    c.entry(main, "sweep.py")


if __name__ == "__main__":
    entry()
