#!/usr/bin/env python
"""Phase diagrams of gradient descent on associative memories: sweep a grid of settings.

The system is n equicorrelated unit inputs (pairwise correlation --corr), orthonormal
outputs, f*(x) = x, scores from 0. Each grid cell runs --steps of GD and records the first
step of full accuracy (-1: never), the number of loss increases, the largest loss spike
(rise above the running minimum), the final loss and the final smallest margin.

Each axis takes a comma list or linspace:a:b:k / logspace:a:b:k (base 10), e.g.

    python scripts/sweep.py --corr linspace:0.5:1:10 --lr logspace:-1:1:10 \\
        --log-odds linspace:0.3:3:10 --steps 1000

The grid runs as one compiled, vmapped call per chunk (the whole grid when it fits in
memory), sharded over all JAX devices; each chunk is checkpointed in OUT/chunks so an
interrupted sweep continues with --resume. Writes OUT/sweep.npz (axes + arrays),
OUT/sweep.json and OUT/phase-<a>-<b>.png for each pair of swept axes.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _cli  # noqa: E402

DEFAULTS = {"lr": "logspace:-1:1:10", "corr": "0.5"}
LABELS = {
    "lr": "learning rate η",
    "corr": "input correlation α",
    "p1": "frequency p₁",
    "log_odds": "log-odds log(p₁/p₂)",
    "n": "inputs N",
    "seed": "seed",
}
TITLES = {
    "first_full_accuracy": "first step of 100% accuracy",
    "max_spike": "largest loss spike (nats)",
    "final_loss": "final loss (nats)",
    "loss_increases": "loss increases (steps)",
    "final_min_margin": "final smallest margin",
}


def build_parser():
    p = _cli.ArgumentParser(
        prog="sweep.py",
        description=__doc__.split("\n\n")[0],
        epilog="Set PARTICLES_SWEEP_STOP_AFTER=k to stop after k chunks (to test --resume).",
    )
    grid = p.add_argument_group("grid axes (comma list, linspace:a:b:k or logspace:a:b:k)")
    grid.add_argument("--lr", default=DEFAULTS["lr"], help="learning rates (default %(default)s)")
    grid.add_argument("--corr", default=DEFAULTS["corr"], help="pairwise input correlation (default %(default)s)")
    grid.add_argument("--p1", help="frequency of input 1; the others share the rest equally")
    grid.add_argument("--log-odds", dest="log_odds", help="log(p1/p2); the other inputs have p2")
    grid.add_argument("--n", default="2", help="number of inputs (= outputs) (default %(default)s)")
    grid.add_argument("--seed", default="0", help="seeds (SGD batches, random init) (default %(default)s)")
    p.add_argument("--steps", type=int, default=1000, help="GD steps per cell (default %(default)s)")
    p.add_argument("--sgd-batch", type=int, help="minibatch SGD with this batch size instead of GD")
    p.add_argument("--init-std", type=float, default=0.0, help="random initial scores N(0, s^2) (default 0)")
    p.add_argument("--chunk-size", type=int, help="cells per compiled call (default: all that fit in memory)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --out")
    p.add_argument("--out", help="output folder (default sweeps/<timestamp>)")
    p.add_argument("--no-plot", action="store_true", help="skip the phase-diagram PNGs")
    _cli.add_common(p)
    return p


def parse_axes(args) -> dict:
    axes = {}
    axes["lr"] = _cli.parse_floats("--lr", args.lr, positive=True)
    axes["corr"] = _cli.parse_floats("--corr", args.corr, lo=-1.0, hi=1.0)
    if args.p1 is not None and args.log_odds is not None:
        raise _cli.UsageError("--log-odds", args.log_odds, "give --p1 or --log-odds, not both (they set the same p)")
    if args.p1 is not None:
        axes["p1"] = _cli.parse_floats("--p1", args.p1)
        _cli.check(all(0 < x < 1 for x in axes["p1"]), "--p1", args.p1, "frequencies strictly between 0 and 1")
    if args.log_odds is not None:
        axes["log_odds"] = _cli.parse_floats("--log-odds", args.log_odds)
    axes["n"] = _cli.parse_ints("--n", args.n, minimum=2)
    axes["seed"] = _cli.parse_ints("--seed", args.seed, minimum=0)
    lo = -1.0 / (max(axes["n"]) - 1)
    _cli.check(min(axes["corr"]) >= lo, "--corr", args.corr,
               f"correlations in [{lo:g}, 1] (equicorrelated unit vectors exist for n up to {max(axes['n'])})")
    _cli.check(args.steps >= 1, "--steps", args.steps, "an integer >= 1")
    _cli.check(args.sgd_batch is None or args.sgd_batch >= 1, "--sgd-batch", args.sgd_batch, "an integer >= 1")
    _cli.check(args.init_std >= 0 and args.init_std == args.init_std, "--init-std", args.init_std, "a number >= 0")
    _cli.check(args.chunk_size is None or args.chunk_size >= 1, "--chunk-size", args.chunk_size, "an integer >= 1")
    return axes


def main(argv) -> int:
    args = build_parser().parse_args(argv)
    axes = parse_axes(args)
    clock = _cli.Clock()
    log = _cli.Log(not (args.quiet or args.json))
    bars = _cli.bars_enabled(args)
    out = args.out or os.path.join("sweeps", _cli.timestamp())
    if args.resume:
        _cli.check(args.out is not None and os.path.isdir(out), "--resume", out,
                   "--resume needs --out naming the folder of the interrupted sweep")
    stop = os.environ.get("PARTICLES_SWEEP_STOP_AFTER")
    stop_after = int(stop) if stop else None

    import numpy as np

    from particles._sweep import SweepInterrupted, sweep_gd

    cells = int(np.prod([len(v) for v in axes.values()]))
    log(f"sweep: {cells} cells over " + ", ".join(f"{k} ({len(v)})" for k, v in axes.items()) +
        f"; {args.steps} {'SGD' if args.sgd_batch else 'GD'} steps each -> {out}")
    try:
        result = sweep_gd(axes, args.steps, sgd_batch=args.sgd_batch, init_std=args.init_std,
                          chunk_size=args.chunk_size, checkpoint=os.path.join(out, "chunks"),
                          resume=args.resume, progress=bars, stop_after=stop_after)
    except SweepInterrupted as e:
        raise _cli.Interrupted(str(e)) from None
    except KeyboardInterrupt:
        # Each chunk is saved when it finishes: say what is kept and how to go on.
        folder = os.path.join(out, "chunks")
        kept = len([f for f in os.listdir(folder) if f.endswith(".npz")]) if os.path.isdir(folder) else 0
        again = " ".join(a for a in argv if a != "--resume")
        if "--out" not in argv:
            again += f" --out {out}"
        raise _cli.Interrupted(f"interrupted; {kept} finished chunk(s) kept in {folder}; "
                               f"continue with: python scripts/sweep.py {again} --resume") from None

    arrays = {f"axis_{k}": np.asarray(v) for k, v in result.axes.items()}
    arrays.update(result.outputs)
    arrays["axis_names"] = np.array(list(result.axes))
    _cli.write_npz(os.path.join(out, "sweep.npz"), arrays)

    figures = []
    if not args.no_plot:
        figures = plot_phases(result, out, log)

    summary = dict(
        config=_cli.config_of(args),
        sweep=result.config,
        axes={k: v for k, v in result.axes.items()},
        shape=list(result.shape),
        metrics=list(result.outputs),
        stats={m: _stats(a) for m, a in result.outputs.items()},
        non_finite_cells=result.n_bad,
        chunks=dict(computed=result.chunks_computed, total=result.chunks_total, resumed=args.resume),
        outputs=result.outputs if cells <= 20000 else "see sweep.npz",
        files=["sweep.npz", "sweep.json", *figures],
        versions=_cli.versions(),
        wall_time_s=round(clock(), 3),
    )
    _cli.write_json(os.path.join(out, "sweep.json"), summary)
    if args.json:
        import json

        print(json.dumps(_cli.jsonable(summary)))
    else:
        ffa = result.outputs["first_full_accuracy"]
        log(f"cells reaching 100% accuracy: {int(np.sum(ffa >= 0))}/{cells}; "
            f"non-finite cells: {result.n_bad}; largest spike {np.nanmax(result.outputs['max_spike']):.4g} nats",
            f"wrote {out}/sweep.npz, sweep.json" + (f" and {len(figures)} figure(s)" if figures else ""),
            f"wall time {clock():.2f} s")
    return 0


def _stats(a):
    import numpy as np

    a = np.asarray(a, dtype=float)
    fin = a[np.isfinite(a)]
    return dict(min=float(fin.min()) if fin.size else None, max=float(fin.max()) if fin.size else None,
                non_finite=int(a.size - fin.size))


def _is_geometric(v) -> bool:
    import numpy as np

    v = np.asarray(v, dtype=float)
    if len(v) < 3 or np.any(v <= 0):
        return False
    r = v[1:] / v[:-1]
    return bool(np.allclose(r, r[0], rtol=1e-6) and abs(r[0] - 1) > 1e-9) and v.max() / v.min() >= 10


def plot_phases(result, out: str, log) -> list[str]:
    """One PNG per pair of swept axes: contours of time to accuracy, spikes and final loss."""
    import itertools

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib import colors

    swept = [k for k, v in result.axes.items() if len(v) > 1]
    names = list(result.axes)
    files = []
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
        fig, axs = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
        for ax, metric in zip(axs, ("first_full_accuracy", "max_spike", "final_loss")):
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
            bad = np.isnan(np.asarray(result.outputs["final_loss"], float)[tuple(index)])
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
        fig.suptitle(f"{steps} GD steps" + (f"; slice at {', '.join(fixed)}" if fixed else ""), fontsize=11)
        name = f"phase-{x}-{y}.png"
        _cli.save_figure(fig, os.path.join(out, name))
        plt.close(fig)
        files.append(name)
    if len(swept) < 2:
        log("(phase diagrams need two swept axes; none drawn)")
    return files


if __name__ == "__main__":
    _cli.run_main(main, fast_exit=True)
