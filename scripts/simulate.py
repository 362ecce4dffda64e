#!/usr/bin/env python
"""Simulate one associative memory: GD at a few step sizes and the gradient flow, against theory.

    python scripts/simulate.py --n 2 --corr 0.3

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
versions, seed, wall time), OUT/trajectory.npz (every run's trajectory, keys
"<run>__<field>") and OUT/figure.png. Exit codes: 0 ok, 2 bad flag, 3 numerical failure.
"""

from __future__ import annotations

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _cli  # noqa: E402

OPTIMIZERS = ("gd", "sgd", "adam", "momentum", "sign")
SMALL, LARGE = 0.5, 4.0  # default rates, in units of the stability limit 2/λ_max(S0)


def build_parser():
    p = _cli.ArgumentParser(prog="simulate.py", description=__doc__.split("\n\n")[0],
                            epilog="Geometry and default step sizes: see the module docstring.")
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
    r = p.add_argument_group("runs")
    r.add_argument("--lr", help="step size(s), comma list (default: from the stability limit)")
    r.add_argument("--steps", type=int, default=1000, help="steps per run (default %(default)s)")
    r.add_argument("--flow", action=__import__("argparse").BooleanOptionalAction, default=True,
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
    _cli.add_common(p)
    return p


# --------------------------------------------------------------- the system
def validate(args):
    c = _cli.check
    c(args.n >= 1, "--n", args.n, "an integer >= 1")
    if args.m is None:
        args.m = args.n
    c(args.m >= 2, "--m", args.m, "an integer >= 2 (one class has no margins)")
    c(args.d is None or args.d >= 1, "--d", args.d, "an integer >= 1")
    c(args.steps >= 1, "--steps", args.steps, "an integer >= 1")
    c(args.seed >= 0, "--seed", args.seed, "an integer >= 0")
    c(args.p is None or args.zipf is None, "--zipf", args.zipf, "give --p or --zipf, not both")
    if args.zipf is not None:
        c(args.zipf == args.zipf and abs(args.zipf) < 1e6, "--zipf", args.zipf, "a finite exponent")
    if args.p is not None:
        p = _cli.parse_floats("--p", args.p, lo=0.0, hi=1.0)
        c(len(p) == args.n, "--p", args.p, f"{args.n} frequencies (one per input, --n {args.n})")
        c(abs(sum(p) - 1) <= 1e-6, "--p", args.p, f"frequencies summing to 1 (they sum to {sum(p):.6g})")
        args.p_values = p
    if args.targets is not None:
        t = _cli.parse_ints("--targets", args.targets, minimum=0)
        c(len(t) == args.n and max(t) < args.m, "--targets", args.targets,
          f"{args.n} integers in [0, {args.m}) (one class per input)")
        args.target_values = t
    if args.lr is not None:
        args.lr_values = _cli.parse_floats("--lr", args.lr, positive=True)
    if args.t1 is not None:
        c(args.t1 > 0 and args.t1 < float("inf"), "--t1", args.t1, "a finite horizon > 0")
    if args.optimizer == "sgd":
        c(args.sgd_batch is not None, "--optimizer", "sgd", "sgd needs --sgd-batch B")
    if args.sgd_batch is not None:
        c(args.sgd_batch >= 1, "--sgd-batch", args.sgd_batch, "an integer >= 1")
        c(args.optimizer in ("gd", "sgd"), "--sgd-batch", args.sgd_batch,
          f"minibatches go with --optimizer gd/sgd, not {args.optimizer}")
        args.optimizer = "sgd"
    d = args.d
    sphere = args.geometry == "sphere" or (d is not None and d < max(args.n, args.m))
    if sphere:
        c(args.corr is None, "--corr", args.corr,
          f"random sphere embeddings (d={d} < max(N, M)={max(args.n, args.m)} or --geometry sphere) have no "
          "set correlation; drop --corr or use d >= max(N, M)")
        c(d is not None, "--geometry", "sphere", "sphere embeddings need --d")
    else:
        corr = 0.0 if args.corr is None else args.corr
        lo = -1.0 / (args.n - 1) if args.n > 1 else -1.0
        c(lo <= corr <= 1.0, "--corr", args.corr, f"a correlation in [{lo:g}, 1] (equicorrelated unit vectors, n={args.n})")
    args.sphere = sphere


def build_problem(args):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import particles

    n, m = args.n, args.m
    if getattr(args, "p_values", None) is not None:
        p = np.asarray(args.p_values, np.float64)
        p = p / p.sum()
    else:
        p = np.asarray(particles.zipf(n, 1.0 if args.zipf is None else args.zipf))
    targets = np.asarray(getattr(args, "target_values", None) or np.arange(n) % m)
    if args.sphere:
        problem = particles.random_sphere(jax.random.key(args.seed), n, m, args.d, p=p, targets=targets)
        geometry = f"random unit-sphere embeddings, d={args.d}, key={args.seed}"
    else:
        corr = 0.0 if args.corr is None else args.corr
        d = args.d or max(n, m)
        problem = particles.equicorrelated(n, corr, p, m, d=d, targets=targets)
        geometry = f"equicorrelated inputs (corr={corr:g}), orthonormal outputs, d={d}"
    if args.dtype == "float32":
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            problem = problem.astype(jnp.float32)
        for w in caught:
            sys.stderr.write(f"warning: {w.message}\n")
    return problem, geometry


def sharpness(problem, S) -> float:
    """λ_max of the population Hessian of L(W) at scores S."""
    from particles.theory import sharpness as lambda_max

    return float(lambda_max(problem, S))


def regime_of(problem) -> str:
    from analysis import regimes

    found = regimes(problem)
    if "orthogonal" in found:
        return "orthogonal"
    if "underparameterized" in found:
        return "underparameterized (d < N: finite cross-entropy minimizer)"
    if "separable" in found:
        return "separable (correlated inputs of full rank: margins grow like log t)"
    return "/".join(found) or "unknown"


# ----------------------------------------------------------------- the runs
def _flow_scores(problem) -> bool:
    """Save the flow's scores (201 rows, the default times) when they are small."""
    return 201 * problem.N * problem.M <= 200_000


def run_all(args, problem, lrs, bars, flow_pool=None):
    """(runs: {name: Trajectory}, lr per run, the flow's future or None); GD rates in one call.

    The flow is left running: the caller analyses the discrete runs meanwhile.
    """
    import jax
    import jax.numpy as jnp

    import particles

    steps = args.steps
    N, M = problem.N, problem.M
    save = dict(save_every=1) if steps <= 5000 else dict(save_steps=particles.log_steps(steps, 2000))
    rows = steps + 1 if steps <= 5000 else len(particles.log_steps(steps, 2000))
    scores = rows * N * M * len(lrs) <= 200_000
    runs, run_lr = {}, {}
    lr_arr = jnp.asarray(lrs, problem.dtype)
    opt = args.optimizer
    flow_future = None
    if args.flow:
        # The flow runs on its own thread while GD compiles (XLA compiles without the GIL).
        if flow_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            flow_pool = ThreadPoolExecutor(1)
        t1 = args.t1 or steps * max(lrs)
        flow_future = flow_pool.submit(particles.flow, problem, t1, save_scores=_flow_scores(problem))
        flow_pool.shutdown(wait=False)
    if opt == "gd":
        if len(lrs) == 1:
            batch = None
            traj = particles.gd(problem, lr_arr[0], steps, save_scores=scores, progress=bars, **save)
        else:
            batch = particles.gd(problem, lr_arr, steps, save_scores=scores, **save)
    elif opt == "sgd":
        key = jax.random.key(args.seed)
        if len(lrs) == 1:
            batch = None
            traj = particles.sgd(problem, lr_arr[0], steps, args.sgd_batch, key, save_scores=scores,
                                 progress=bars, **save)
        else:
            batch = particles.sgd(problem, lr_arr, steps, args.sgd_batch, key, save_scores=scores, **save)
    # Everything downstream is analysis on small arrays: numpy copies avoid compiling one
    # XLA kernel per eager JAX operation (slicing, reductions), which dominated start-up.
    if opt in ("gd", "sgd"):
        traj, batch = jax.device_get((traj if batch is None else None, batch))
    for k, lr in enumerate(lrs):
        name = f"{opt}_lr{k}"
        if opt in ("gd", "sgd"):
            runs[name] = traj if batch is None else batch[k]
        else:
            runs[name] = jax.device_get(particles.gd_weights(problem, lr_arr[k], steps, optimizer=opt,
                                                             save_scores=scores, progress=bars, **save))
        run_lr[name] = lr
    if flow_future is not None:
        run_lr["flow"] = None
    return runs, run_lr, flow_future


def theory_overlay(problem, runs, run_lr):
    """Dashed theory curves for the margin panels: {label: (t, values (T, N))}."""
    import numpy as np

    from analysis import regimes
    from particles import theory

    found = regimes(problem)
    out = {}
    ref = next(iter(runs.values()))
    t = np.asarray(ref.t, np.float64)
    p = np.asarray(problem.p, np.float64)
    if "orthogonal" in found:
        if "flow" in runs:
            tt, label = np.asarray(runs["flow"].t, np.float64), "flow theory (Lambert W)"
        else:
            lr = run_lr[next(iter(runs))]
            tt, label = t * lr, "flow theory at t = η·step"
        with np.errstate(all="ignore"):
            m = np.asarray(theory.orthogonal_flow_margin(tt[:, None], p[None, :], problem.M))
        if np.all(np.isfinite(m)):
            out[label] = (tt if "flow" in runs else t, m)
    elif "two_particles" in found:
        lr = run_lr[next(iter(runs))] or 1.0
        corr = float(np.asarray(problem.G_E)[0, 1])
        tt = t[t > 0]
        values = np.asarray(theory.two_particles_margin_asymptote(tt, lr, corr, p[0]))
        # Beside a flow the figure's time axis is t = η·step (see `figure`); the asymptote
        # log(2(1-α) η p_x k) at step k is the same curve at that time.
        out["asymptote log(2(1-α)ηp t)"] = (tt * lr if "flow" in runs else tt, values)
    return out or None


# -------------------------------------------------------------------- main
def main(argv) -> int:
    import numpy as np

    # Overflow in derived quantities is handled (dropped rows, exit 3), not warned about.
    with np.errstate(all="ignore"):
        return _main(argv)


def _preload(plots: bool) -> None:
    try:
        import particles.theory  # noqa: F401
        import analysis  # noqa: F401

        if plots:
            import matplotlib

            matplotlib.use("Agg")
            import io

            from matplotlib.figure import Figure

            # The first draw loads fonts and builds text caches; do it here, off the
            # critical path, with the glyphs and scales the real figure uses.
            fig = Figure(figsize=(2, 2))
            ax = fig.subplots()
            ax.plot([1e-2, 1e5], [1e-6, 1e1], label="γ η α λ ∇ ▼ ₁ ² m(x)")  # parses 10^k labels
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.legend(loc="best")
            ax.set_title("t")
            fig.savefig(io.BytesIO(), format="png", dpi=110)
    except Exception:  # the main thread reports any real import problem itself
        pass


def _main(argv) -> int:
    import dataclasses

    args = build_parser().parse_args(argv)
    validate(args)
    clock = _cli.Clock()
    log = _cli.Log(not (args.quiet or args.json))
    bars = _cli.bars_enabled(args)
    out = args.out or os.path.join("runs", _cli.timestamp())
    # Import what the summary and the figure need on a second thread: it proceeds while the
    # main thread waits on XLA compilations (which release the GIL).
    warm = threading.Thread(target=_preload, args=(not args.no_plot,), daemon=True)
    warm.start()

    import numpy as np

    problem, geometry = build_problem(args)
    import particles

    flow_pool = None
    if args.flow:
        from concurrent.futures import ThreadPoolExecutor

        # Compile the flow on a second thread while the step sizes are chosen: t1 is an array
        # argument, so the real solve in run_all reuses this compilation.
        flow_pool = ThreadPoolExecutor(1)
        flow_pool.submit(particles.flow, problem, 1.0, save_scores=_flow_scores(problem))

    N, M = problem.N, problem.M
    lam0 = sharpness(problem, problem.S0)
    limit = 2.0 / lam0 if lam0 > 0 else float("inf")
    if getattr(args, "lr_values", None) is not None:
        lrs = args.lr_values
        lr_reason = "given by --lr"
    else:
        lrs = [float(f"{SMALL * limit:.3g}"), float(f"{LARGE * limit:.3g}")]
        lr_reason = (f"default: {SMALL:g} and {LARGE:g} × the stability limit 2/λ_max(S0) = {limit:.4g} "
                     f"(λ_max = {lam0:.4g}); the second is beyond the edge of stability")
    regime = regime_of(problem)

    d = problem.d if problem.d is not None else N
    log(f"system   N={N} inputs, M={M} outputs, d={d}; {geometry}",
        f"         p = {_fmt_vec(problem.p)}; targets f*(x) = {np.asarray(problem.targets).tolist()}",
        f"         regime: {regime}")
    if N <= 6:
        G = np.asarray(problem.G_E)
        log("         Gram G_E = E E^T:", *("           " + "  ".join(f"{v:+.3f}" for v in row) for row in G))
    log(f"step sizes {', '.join(f'{x:g}' for x in lrs)} ({lr_reason})",
        f"optimizer {args.optimizer}" + (f", batch {args.sgd_batch}" if args.sgd_batch else "") +
        f"; {args.steps} steps; dtype {args.dtype}" + (f"; flow to t1={args.t1 or args.steps * max(lrs):g}" if args.flow else ""))

    runs, run_lr, flow_future = run_all(args, problem, lrs, bars, flow_pool)

    # ---------------------------------------------------------- analysis
    import analysis

    results, tables, notes = {}, {}, []
    failures = []

    def analyse(name, traj):
        lr = run_lr[name]
        res = dict(name=name, integrator=traj.integrator, lr=lr, status=int(np.asarray(traj.status)),
                   message=traj.message, final_loss=float(np.asarray(traj.loss)[-1]),
                   final_accuracy=float(np.asarray(traj.accuracy)[-1]),
                   final_margins=np.asarray(traj.margins)[-1].tolist())
        failure = _failure(name, traj)
        if failure:
            failures.append(failure)
            res["failure"] = failure
        if not failure:
            summ, err = _cli.safe_call(analysis.summarize, traj)
            if summ is not None:
                res["summary"] = summ
            else:
                notes.append(err)
        if lr is not None and not failure:
            lam_end = sharpness(problem, traj.final_scores)
            res["stability_ratio_start"] = lr * lam0 / 2
            res["stability_ratio_end"] = lr * lam_end / 2
            res["sharpness_end"] = lam_end
        if not failure:
            comp, err = _cli.safe_call(analysis.compare, problem, traj, lr=lr)
            if comp is not None:
                kept = [r for r in comp.rows if not _has_nan(dataclasses.asdict(r))]
                if len(kept) < len(comp.rows):
                    notes.append(f"{name}: {len(comp.rows) - len(kept)} theory row(s) dropped: "
                                 "non-finite prediction or error (overflow at these settings)")
                tables[name] = dataclasses.replace(comp, rows=kept)
            else:
                notes.append(err)
        results[name] = res

    # The discrete runs are analysed while the flow finishes on its thread.
    for name, traj in list(runs.items()):
        analyse(name, traj)
    if flow_future is not None:
        import jax

        runs["flow"] = jax.device_get(flow_future.result())
        analyse("flow", runs["flow"])

    for name, res in results.items():
        traj = runs[name]
        head = f"{name}" + (f" (η = {res['lr']:g})" if res["lr"] is not None else f" (t1 = {float(np.asarray(traj.t)[-1]):g})")
        s = res.get("summary", {})
        lines = [f"\n== {head}: {res['message']}",
                 f"   final loss {res['final_loss']:.6g}, accuracy {res['final_accuracy']:.4g}, "
                 f"margins {_fmt_vec(res['final_margins'])}"]
        if s:
            big = s.get("largest_spike")
            lines.append(f"   loss spikes {s.get('spikes')}" +
                         (f" (largest +{big['height']:.4g} nats at step {big['step']}, peak {big['peak_step']})" if big else "") +
                         f"; margin oscillations {s.get('oscillations')}; sign flips {s.get('sign_flips')}")
            ffa = s.get("first_full_accuracy")
            when = "step" if traj.steps is not None else "time"
            shown = "never" if ffa is None else (f"{ffa}" if traj.steps is not None else f"t = {ffa:.4g}")
            lines.append(f"   first {when} of 100% accuracy: {shown}" +
                         (f"; ends in a period-{s['cycle']['period']} cycle" if s.get("cycle") and s["cycle"]["period"] > 1 else ""))
        if "stability_ratio_start" in res:
            lines.append(f"   stability ratio η·λ_max/2: {res['stability_ratio_start']:.4g} at start, "
                         f"{res['stability_ratio_end']:.4g} at end (stable below 1)")
        if name in tables:
            lines.append("   theory vs simulation:")
            lines += ["     " + ln for ln in tables[name].text().splitlines()]
        log(*lines)

    # ------------------------------------------------------------ files
    arrays = {"lr": np.asarray(lrs, np.float64), "runs": np.asarray(list(runs))}
    for name, traj in runs.items():
        for field in ("t", "loss", "zero_one", "accuracy", "margins", "final_scores", "status", "first_bad_step",
                      "steps", "scores", "W"):
            value = getattr(traj, field)
            if value is not None:
                arrays[f"{name}__{field}"] = np.asarray(value)
    arrays["G_E"], arrays["G_U"], arrays["p"] = (np.asarray(problem.G_E), np.asarray(problem.G_U),
                                                 np.asarray(problem.p))
    arrays["targets"] = np.asarray(problem.targets)
    _cli.write_npz(os.path.join(out, "trajectory.npz"), arrays)

    files = ["summary.json", "trajectory.npz"]
    if not args.no_plot and not failures:
        made = _figure(problem, runs, run_lr, os.path.join(out, "figure.png"), notes)
        if made:
            files.append("figure.png")
    elif failures and not args.no_plot:
        notes.append("figure.png not written: a run went non-finite")

    # A finite run can still give non-finite derived numbers (a prediction that overflows at
    # lr = 1e308, a slope of overflowing margins): never report those as a success.
    for name, res in results.items():
        path = _nan_path(res, name)
        if path and "failure" not in res:
            res["failure"] = f"{path} is NaN"
            failures.append(f"{name}: {path} is NaN (overflow at these settings)")

    summary = dict(
        config=_cli.config_of(args),
        seed=args.seed,
        system=dict(N=N, M=M, d=d, geometry=geometry, p=np.asarray(problem.p), targets=np.asarray(problem.targets),
                    G_E=np.asarray(problem.G_E) if N <= 16 else None, regime=regime,
                    sharpness_start=lam0, stability_limit=limit),
        lr=lrs,
        lr_reason=lr_reason,
        results=results,
        comparison={k: v.to_json() for k, v in tables.items()},
        notes=notes,
        files=files,
        versions=_cli.versions(),
        wall_time_s=round(clock(), 3),
    )
    _cli.write_json(os.path.join(out, "summary.json"), summary)
    for n in notes:
        log(f"note: {n}")
    if failures:
        raise _cli.NumericalError("; ".join(failures) + f" (results so far in {out})")
    if args.json:
        import json

        print(json.dumps(_cli.jsonable(summary)))
    log(f"\nwrote {out}/" + ", ".join(files), f"wall time {clock():.2f} s")
    return 0


def _nan_path(obj, path: str):
    """The first place in a nested dict/list holding NaN, or None."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        for k, val in obj.items():
            found = _nan_path(val, f"{path}.{k}")
            if found:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, val in enumerate(obj):
            found = _nan_path(val, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(obj, np.ndarray) and obj.dtype.kind == "f" and np.isnan(obj).any():
        return path
    elif isinstance(obj, float) and math.isnan(obj):
        return path
    elif isinstance(obj, str) and obj == "nan":
        return path
    return None


def _has_nan(row) -> bool:
    return _nan_path(row, "") is not None


def _failure(name, traj):
    """None when the run is finite throughout, else what went non-finite and when."""
    import numpy as np

    status = int(np.asarray(traj.status))
    if status == 1 and traj.steps is not None:
        return f"{name}: the state became non-finite (NaN/inf) at step {int(np.asarray(traj.first_bad_step))}"
    if status != 0:
        return f"{name}: {traj.message}"
    # The integrators watch their state (W for gd_weights); the observables can still overflow.
    when = np.asarray(traj.steps if traj.steps is not None else traj.t)
    for field in ("loss", "margins"):
        a = np.asarray(getattr(traj, field), np.float64)
        bad = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
        if bad.any():
            k = int(np.argmax(bad))
            kind = "NaN" if np.isnan(a[k]).any() else "inf"
            unit = "step" if traj.steps is not None else "time"
            return f"{name}: the {field} became non-finite ({kind}) at {unit} {when[k]:g}"
    return None


def _figure(problem, runs, run_lr, path, notes) -> bool:
    import analysis

    import dataclasses

    import numpy as np

    labels = {}
    with_flow = "flow" in runs
    for name, traj in runs.items():
        lr = run_lr[name]
        if lr is None:
            labels["gradient flow"] = traj
        elif with_flow:
            # On one time axis with the flow: step k of GD with rate η sits at time t = η k.
            view = dataclasses.replace(traj, t=np.asarray(traj.t) * lr, steps=None)
            labels[f"{traj.integrator} η={lr:g} (t = η·step)"] = view
        else:
            labels[f"{traj.integrator} η={lr:g}"] = traj
    overlay = theory_overlay(problem, runs, run_lr)
    fig, err = _cli.safe_call(analysis.figure_for_run, problem, labels, theory=overlay,
                              title=f"N={problem.N}, M={problem.M}: margins, losses and theory")
    if fig is None:
        notes.append(err)
        return False
    _cli.save_figure(fig, path, dpi=110)
    return True


def _fmt_vec(v) -> str:
    import numpy as np

    v = np.asarray(v, np.float64).ravel()
    if v.size > 8:
        return f"[{v[0]:.4g}, {v[1]:.4g}, ..., {v[-1]:.4g}] ({v.size})"
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"


if __name__ == "__main__":
    _cli.run_main(main, fast_exit=True)
