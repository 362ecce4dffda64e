"""Simulate one associative memory: GD at a few step sizes and the gradient flow, against theory.

    python scripts/simulate.py --n 2 --corr 0.3          (or: particles-simulate --n 2 --corr 0.3)

Geometry. By default the n inputs are the exact equicorrelated unit vectors of dimension n
(pairwise correlation --corr; `particles.equicorrelated`) and the outputs are orthonormal.
With --d: when d >= max(n, m) the same vectors are padded with zeros into R^d (same Gram
matrices, exact); when d < max(n, m), or with --geometry sphere, the embeddings are
Gaussian rows normalised to the unit sphere (`particles.random_sphere`, key --seed), as in
the paper's random-embedding experiments; --corr does not apply to them.

Step sizes. Without --lr two rates are picked from the stability limit 2/λ_max at the start
(λ_max = sharpness of the loss at S0): 0.5 × 2/λ_max (stable) and 4 × 2/λ_max (beyond the
edge of stability, where loss spikes can appear); the reason is printed.

Writes OUT/summary.json (configuration, results, theory-versus-simulation tables,
versions, seed, wall time), OUT/trajectory.npz (every run and the problem: read it with
`particles.load`) and OUT/figure.png. Exit codes: 0 ok, 2 bad flag or input, 3 numerical
failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import jax
import numpy as np

import particles

from . import _common as c
from ._report import analyse, print_run

OPTIMIZERS = ("gd", "sgd", "adam", "momentum", "sign")
SMALL, LARGE = 0.5, 4.0  # default rates, in units of the stability limit 2/λ_max(S0)
SAVE_EVERY_UP_TO = 5000  # longer runs save log-spaced steps (2000 rows) instead of every step
SCORES_BUDGET = 200_000  # save the scores (for the γ-plane) when they are at most this many numbers


def build_parser():
    p = c.ArgumentParser(prog="simulate.py", description=__doc__.split("\n\n")[0],
                         epilog="Geometry and default step sizes: see `python -m particles.cli.simulate` docs.")
    s = p.add_argument_group("system")
    s.add_argument("--n", type=int, default=2, help="number of inputs N (default %(default)s)")
    s.add_argument("--m", type=int, help="number of outputs M (default N)")
    s.add_argument("--d", type=int, help="embedding dimension (default: N, exact equicorrelated vectors)")
    s.add_argument("--geometry", choices=("equicorrelated", "sphere"),
                   help="embeddings (default equicorrelated; sphere when d < max(N, M))")
    s.add_argument("--corr", type=float, help="pairwise input correlation (default 0)")
    s.add_argument("--p", help="input frequencies, comma list summing to 1")
    s.add_argument("--zipf", type=float, help="Zipf exponent a: p(x) ∝ x^-a (default 1)")
    s.add_argument("--targets", help="f*(x) for each input, comma list of ints in [0, M) (default x mod M)")
    s.add_argument("--gamma0", help="start at γ = Wᵀ(u_0 − u_1) = g1,g2 (two classes in a plane; default 0)")
    r = p.add_argument_group("runs")
    r.add_argument("--lr", help="step size(s), comma list (default: from the stability limit)")
    r.add_argument("--steps", type=int, default=1000, help="steps per run (default %(default)s)")
    r.add_argument("--flow", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the gradient flow to --t1 (default on)")
    r.add_argument("--t1", type=float, help="flow horizon (default steps × max lr)")
    r.add_argument("--sgd-batch", type=int, help="minibatch SGD with this batch size")
    r.add_argument("--optimizer", choices=OPTIMIZERS, default="gd",
                   help="gd/sgd in score space; adam, momentum, sign on W through particles.gd_weights")
    r.add_argument("--seed", type=int, default=0, help="seed for SGD batches and random embeddings")
    r.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="float32 is a speed mode (it warns: long runs stall)")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="output folder (default runs/<timestamp>)")
    o.add_argument("--no-plot", action="store_true", help="skip figure.png")
    o.add_argument("--animate", metavar="FILE", help="also write an animation (.gif; .mp4 where ffmpeg exists)")
    c.add_common(p)
    return p


# --------------------------------------------------------------- the system
def validate(args) -> None:
    ck = c.check
    ck(args.n >= 1, "--n", args.n, "an integer >= 1")
    args.m = args.n if args.m is None else args.m
    ck(args.m >= 2, "--m", args.m, "an integer >= 2 (one class has no margins)")
    ck(args.d is None or args.d >= 1, "--d", args.d, "an integer >= 1")
    ck(args.steps >= 1, "--steps", args.steps, "an integer >= 1")
    ck(args.seed >= 0, "--seed", args.seed, "an integer >= 0")
    ck(args.p is None or args.zipf is None, "--zipf", args.zipf, "give --p or --zipf, not both")
    if args.zipf is not None:
        ck(np.isfinite(args.zipf) and abs(args.zipf) < 1e6, "--zipf", args.zipf, "a finite exponent")
    args.p_values = None if args.p is None else c.parse_floats("--p", args.p, lo=0.0, hi=1.0)
    if args.p_values is not None:
        ck(len(args.p_values) == args.n, "--p", args.p, f"{args.n} frequencies (one per input, --n {args.n})")
        total = sum(args.p_values)
        ck(abs(total - 1) <= 1e-6, "--p", args.p, f"frequencies summing to 1 (they sum to {total:.6g})")
    args.target_values = None if args.targets is None else c.parse_ints("--targets", args.targets, minimum=0)
    if args.target_values is not None:
        ck(len(args.target_values) == args.n and max(args.target_values) < args.m, "--targets", args.targets,
           f"{args.n} integers in [0, {args.m}) (one class per input)")
    args.lr_values = None if args.lr is None else c.parse_floats("--lr", args.lr, positive=True)
    if args.t1 is not None:
        ck(0 < args.t1 < float("inf"), "--t1", args.t1, "a finite horizon > 0")
    if args.optimizer == "sgd":
        ck(args.sgd_batch is not None, "--optimizer", "sgd", "sgd needs --sgd-batch B")
    if args.sgd_batch is not None:
        ck(args.sgd_batch >= 1, "--sgd-batch", args.sgd_batch, "an integer >= 1")
        ck(args.optimizer in ("gd", "sgd"), "--sgd-batch", args.sgd_batch,
           f"minibatches go with --optimizer gd/sgd, not {args.optimizer}")
        args.optimizer = "sgd"
    args.sphere = args.geometry == "sphere" or (args.d is not None and args.d < max(args.n, args.m))
    if args.sphere:
        ck(args.corr is None, "--corr", args.corr,
           f"random sphere embeddings (d={args.d} < max(N, M)={max(args.n, args.m)} or --geometry sphere) have "
           "no set correlation; drop --corr or use d >= max(N, M)")
        ck(args.d is not None, "--geometry", "sphere", "sphere embeddings need --d")
    else:
        lo = -1.0 / (args.n - 1) if args.n > 1 else -1.0
        ck(lo <= (args.corr or 0.0) <= 1.0, "--corr", args.corr,
           f"a correlation in [{lo:g}, 1] (equicorrelated unit vectors, n={args.n})")
    args.gamma0_values = None if args.gamma0 is None else c.parse_floats("--gamma0", args.gamma0)
    if args.gamma0_values is not None:
        planar = args.m == 2 and (args.d == 2 or (args.d is None and args.n == 2))
        ck(planar and len(args.gamma0_values) == 2, "--gamma0", args.gamma0,
           "two numbers g1,g2, for two classes whose embeddings live in a plane (--m 2 and --d 2, or --n 2)")
    if args.animate is not None:
        ck(os.path.splitext(args.animate)[1].lower() in (".gif", ".mp4"), "--animate", args.animate,
           "a file name ending in .gif or .mp4")
    _check_size(args)


def _check_size(args) -> None:
    """Refuse a system that cannot fit in memory before anything is allocated."""
    N, M = args.n, args.m
    d = args.d or max(N, M)
    rows = min(args.steps, SAVE_EVERY_UP_TO) + 1
    runs = 1 + (len(args.lr_values) if args.lr_values else 2)
    needed = 8.0 * (N * N + M * M + (N + M) * d + 8 * N * M + runs * rows * (N + 3))
    c.check_memory(needed, "--n/--m/--d", "use smaller --n, --m or --d, fewer --steps, --dtype float32, or "
                   "particles.gd_vocab (vocabulary scale, never forms the N×M scores)")


def build_problem(args):
    n, m = args.n, args.m
    if args.p_values is not None:
        p = np.asarray(args.p_values, np.float64)
        p = p / p.sum()
    else:
        p = particles.zipf(n, 1.0 if args.zipf is None else args.zipf)
    targets = np.asarray(args.target_values if args.target_values is not None else np.arange(n) % m)
    if args.sphere:
        problem = particles.random_sphere(args.seed, n, m, args.d, p=p, targets=targets)
        geometry = f"random unit-sphere embeddings, d={args.d}, key={args.seed}"
    elif n == m == 2 and args.d in (None, 2) and targets.tolist() == [0, 1]:
        # The paper's basis, so that the γ-plane is the paper's (the equicorrelated pair is the
        # same system rotated: same Grams, same scores).
        corr = args.corr or 0.0
        problem = particles.two_particles(corr, float(np.asarray(p)[0]))
        geometry = f"the paper's two particles: e1 = (1, 0), e2 = (corr, √(1 − corr²)), corr={corr:g}"
    else:
        corr, d = args.corr or 0.0, args.d or max(n, m)
        problem = particles.equicorrelated(n, corr, p, m, d=d, targets=targets)
        geometry = f"equicorrelated inputs (corr={corr:g}), orthonormal outputs, d={d}"
    if args.gamma0_values is not None:
        # γ = Wᵀ(u_0 − u_1): W0 = (u_0 − u_1) γ0ᵀ / |u_0 − u_1|² starts there.
        E, U = np.asarray(problem.E), np.asarray(problem.U)
        du = U[0] - U[1]
        W0 = np.outer(du, args.gamma0_values) / (du @ du)
        problem = particles.Problem.from_embeddings(E, U, problem.p, problem.targets, W0=W0)
        geometry += f"; γ0 = ({args.gamma0_values[0]:g}, {args.gamma0_values[1]:g})"
    if args.dtype == "float32":
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            problem = problem.astype(np.float32)
        for w in caught:
            sys.stderr.write(f"warning: {w.message}\n")
    return problem, geometry


# ----------------------------------------------------------------- the runs
def run_all(args, problem, lrs, bars) -> dict:
    """{name: Trajectory}: the rates in one batched call (gd/sgd), then the flow.

    (Solving the flow on a second thread while GD compiles saved 5–9% of the headline's wall
    time, under the 10% a start-up trick must save to stay: BENCHMARKS.md, finding 7.)
    """
    runs = _discrete(args, problem, lrs, bars)
    if args.flow:
        t1 = args.t1 or args.steps * max(lrs)
        flow_scores = 201 * problem.N * problem.M <= SCORES_BUDGET
        runs["flow"] = jax.device_get(particles.flow(problem, t1, save_scores=flow_scores))
    return runs


def _discrete(args, problem, lrs, bars) -> dict:
    steps = args.steps
    save = (dict(save_every=1) if steps <= SAVE_EVERY_UP_TO
            else dict(save_steps=particles.log_steps(steps, 2000)))
    rows = steps + 1 if steps <= SAVE_EVERY_UP_TO else len(particles.log_steps(steps, 2000))
    scores = rows * problem.N * problem.M * len(lrs) <= SCORES_BUDGET
    opt, rates = args.optimizer, np.asarray(lrs, np.float64)
    runs = {}
    if opt in ("gd", "sgd"):
        extra = () if opt == "gd" else (args.sgd_batch, args.seed)
        integrate = particles.gd if opt == "gd" else particles.sgd
        if len(lrs) == 1:
            batch = [integrate(problem, rates[0], steps, *extra, save_scores=scores, progress=bars, **save)]
        else:
            batch = jax.device_get(integrate(problem, rates, steps, *extra, save_scores=scores, **save))
            batch = [batch[k] for k in range(len(lrs))]  # numpy members: nothing to compile
        runs = {f"{opt}_lr{k}": jax.device_get(t) for k, t in enumerate(batch)}
    else:
        for k, lr in enumerate(lrs):
            runs[f"{opt}_lr{k}"] = jax.device_get(particles.gd_weights(
                problem, lr, steps, optimizer=opt, save_scores=scores, progress=bars, **save))
    return runs


# -------------------------------------------------------------------- main
def main(argv: Sequence[str]) -> int:
    # Overflow in derived quantities is handled (dropped rows, exit 3), not warned about.
    with np.errstate(all="ignore"):
        return _main(argv)


def _main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    validate(args)
    clock = c.Clock()
    log = c.Log(not (args.quiet or args.json))
    bars = c.bars_enabled(args)
    out = c.out_folder("--out", args.out or os.path.join("runs", c.timestamp()))

    problem, geometry = build_problem(args)
    lam0 = float(particles.theory.sharpness(problem, problem.S0))
    limit = 2.0 / lam0 if lam0 > 0 else float("inf")
    if args.lr_values is not None:
        lrs, lr_reason = args.lr_values, "given by --lr"
    else:
        lrs = [float(f"{SMALL * limit:.3g}"), float(f"{LARGE * limit:.3g}")]
        lr_reason = (f"default: {SMALL:g} and {LARGE:g} × the stability limit 2/λ_max(S0) = {limit:.4g} "
                     f"(λ_max = {lam0:.4g}); the second is beyond the edge of stability")
    regime = particles.analysis.describe_regime(problem)
    N, M = problem.N, problem.M
    d = problem.d if problem.d is not None else N
    log(f"system   N={N} inputs, M={M} outputs, d={d}; {geometry}",
        f"         p = {_fmt_vec(problem.p)}; targets f*(x) = {np.asarray(problem.targets).tolist()}",
        f"         regime: {regime}")
    if N <= 6:
        log("         Gram G_E = E E^T:",
            *("           " + "  ".join(f"{x:+.3f}" for x in row) for row in np.asarray(problem.G_E)))
    log(f"step sizes {', '.join(f'{x:g}' for x in lrs)} ({lr_reason})",
        f"optimizer {args.optimizer}" + (f", batch {args.sgd_batch}" if args.sgd_batch else "")
        + f"; {args.steps} steps; dtype {args.dtype}"
        + (f"; flow to t1={args.t1 or args.steps * max(lrs):g}" if args.flow else ""))

    runs = run_all(args, problem, lrs, bars)
    run_lr = {name: (None if name == "flow" else lrs[int(name.rsplit("lr", 1)[1])]) for name in runs}
    results, tables, notes = {}, {}, []
    for name, traj in runs.items():
        results[name], table = analyse(problem, name, traj, run_lr[name], lam0, notes)
        if table is not None:
            tables[name] = table
        log(*print_run(name, traj, results[name], table))
    failures = [r["failure"] for r in results.values() if "failure" in r]

    particles.save(os.path.join(out, "trajectory.npz"), particles.Runs(runs), problem=problem,
                   extra=dict(config=c.config_of(args), lr=lrs))
    files = ["summary.json", "trajectory.npz"]
    if failures:
        notes.append("no figure or animation: a run went non-finite")
    else:
        files += _pictures(args, problem, runs, run_lr, out, notes)
    summary = dict(
        config=c.config_of(args), seed=args.seed,
        system=dict(N=N, M=M, d=d, geometry=geometry, p=np.asarray(problem.p), targets=np.asarray(problem.targets),
                    G_E=np.asarray(problem.G_E) if N <= 16 else None, regime=regime, sharpness_start=lam0,
                    stability_limit=limit),
        lr=lrs, lr_reason=lr_reason, results=results, comparison={k: t.to_json() for k, t in tables.items()},
        notes=notes, files=files, versions=c.versions(), wall_time_s=round(clock(), 3),
    )
    c.write_json(os.path.join(out, "summary.json"), summary)
    for note in notes:
        log(f"note: {note}")
    if failures:
        raise c.NumericalError("; ".join(failures) + f" (results so far in {out})")
    if args.json:
        import json

        print(json.dumps(c.jsonable(summary)))
    log(f"\nwrote {out}/" + ", ".join(files), f"wall time {clock():.2f} s")
    return 0


def _pictures(args, problem, runs, run_lr, out, notes) -> list:
    import particles.analysis as pa

    files = []
    labelled = pa.label_runs(runs, run_lr)
    if not args.no_plot:
        fig, err = c.safe_call(pa.figure_for_run, problem, labelled, theory=pa.theory_curves(problem, runs, run_lr),
                               title=f"N={problem.N}, M={problem.M}: margins, losses and theory")
        if fig is None:
            notes.append(err)
        else:
            c.save_figure(fig, os.path.join(out, "figure.png"), dpi=110)
            files.append("figure.png")
    if args.animate is not None:
        path, err = c.safe_call(pa.animate, problem, labelled, args.animate,
                                theory=pa.theory_curves(problem, runs, run_lr))
        if path is None:
            notes.append(err)
        else:
            files.append(os.path.abspath(path))
    return files


def _fmt_vec(v) -> str:
    v = np.asarray(v, np.float64).ravel()
    if v.size > 8:
        return f"[{v[0]:.4g}, {v[1]:.4g}, ..., {v[-1]:.4g}] ({v.size})"
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"


def entry() -> None:
    c.entry(main, "simulate.py")


if __name__ == "__main__":
    entry()
