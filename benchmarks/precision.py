"""How far float32 drifts from float64 in long GD runs, and what mixed precision buys (issue 16).

    python benchmarks/precision.py            # N = M = 2,000, d = 64, 10^4 steps (minutes on 2 cores)
    python benchmarks/precision.py --quick    # N = M = 300, d = 16, 10^3 steps

Three runs of `particles.gd_vocab` on the same problem (unit-sphere embeddings, Zipf(1)
frequencies, f*(x) = x mod M, W0 = 0, lr = 100: lr * lambda_max(S = 0) / 2 = 0.15 (Kronecker form), a
stable step): float64 (the reference), float32, and mixed precision (float32 E, U, scores and
softmax; each chunk's gradient accumulated into a float64 W). Rows every 100 steps: the
margins of every token, the loss, the accuracy. Reported at 10^3 and 10^4 steps: max and
median |m_32(x) - m_64(x)|, the relative loss gap, and the time per step (compile excluded).

Writes JSON (default benchmarks/precision.json) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--N", type=int, default=2000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--lr", type=float, default=100.0)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=250)
    ap.add_argument("--out", default=None, help="default benchmarks/precision.json (precision_quick.json with --quick)")
    ap.add_argument("--speed-only", action="store_true",
                    help="only the interleaved speed comparison, merged into an existing --out file")
    args = ap.parse_args()
    if args.out is None:
        args.out = os.path.join(ROOT, "benchmarks", "precision" + ("_quick" if args.quick else "") + ".json")
    if args.quick:
        args.N, args.d, args.steps = 300, 16, 1000

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    from particles._vocab import gd_vocab

    N = M = args.N
    rng = np.random.default_rng(0)
    E = rng.normal(size=(N, args.d))
    U = rng.normal(size=(M, args.d))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    p = 1.0 / np.arange(1, N + 1)
    p /= p.sum()
    t = np.arange(N) % M
    variants = dict(float64=dict(dtype=jnp.float64), float32=dict(dtype=jnp.float32),
                    mixed=dict(dtype=jnp.float64, compute_dtype=jnp.float32))
    load0 = os.getloadavg()
    speed = interleaved_speed(E, U, p, t, args, variants)
    print(f"speed: {speed}", file=sys.stderr, flush=True)
    if args.speed_only:
        with open(args.out) as f:
            result = json.load(f)
        result["speed"] = speed
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(table(result))
        return
    runs = {}
    for name, kw in variants.items():
        common = dict(chunk=args.chunk, save_every=args.every, devices=1, **kw)
        t0 = time.perf_counter()
        gd_vocab(E, U, p, t, args.lr, args.every, **common)  # compiles (same shapes as the long run)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        traj = gd_vocab(E, U, p, t, args.lr, args.steps, **common)
        traj.W.block_until_ready()
        wall = time.perf_counter() - t0
        runs[name] = dict(traj=traj, wall=wall, t_first=t_first)
        print(f"{name}: {wall:.1f} s for {args.steps} steps ({wall / args.steps * 1e3:.2f} ms/step); "
              f"first call {t_first:.1f} s; load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)

    ref = runs["float64"]["traj"]
    m64 = np.asarray(ref.margins)
    L64 = np.asarray(ref.loss)
    steps = np.asarray(ref.steps)
    checkpoints = [s for s in (10**3, 10**4) if s <= args.steps] or [args.steps]
    rows = []
    for name in ("float32", "mixed"):
        tr = runs[name]["traj"]
        dm = np.abs(np.asarray(tr.margins, np.float64) - m64)
        dL = np.abs(np.asarray(tr.loss, np.float64) - L64) / L64
        for s in checkpoints:
            i = int(np.flatnonzero(steps == s)[0])
            rows.append(dict(variant=name, step=s, max_margin_gap=float(dm[i].max()),
                             median_margin_gap=float(np.median(dm[i])),
                             rel_margin_gap=float(np.max(dm[i] / np.maximum(np.abs(m64[i]), 1e-300))),
                             loss64=float(L64[i]), loss=float(np.asarray(tr.loss)[i]), rel_loss_gap=float(dL[i]),
                             accuracy_gap=float(abs(float(np.asarray(tr.accuracy)[i]) - float(ref.accuracy[i]))),
                             min_margin64=float(ref.min_margin[i]), min_margin=float(np.asarray(tr.min_margin)[i]),
                             ms_per_step=runs[name]["wall"] / args.steps * 1e3,
                             ms_per_step64=runs["float64"]["wall"] / args.steps * 1e3))
    result = dict(N=N, M=M, d=args.d, lr=args.lr, steps=args.steps, chunk=args.chunk, speed=speed,
                  machine=dict(cores=os.cpu_count(), load_start=load0, load_end=os.getloadavg()),
                  walls={k: r["wall"] for k, r in runs.items()}, first_call={k: r["t_first"] for k, r in runs.items()},
                  rows=rows,
                  curves=dict(steps=steps.tolist(), loss64=L64.tolist(),
                              max_margin_gap={k: np.abs(np.asarray(runs[k]["traj"].margins, np.float64) - m64)
                                              .max(axis=1).tolist() for k in ("float32", "mixed")}))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(table(result))


def interleaved_speed(E, U, p, t, args, variants, steps=100, rounds=7):
    """ms per step of each variant in `rounds` rounds that run every variant in turn, and the
    median over rounds of float64's time over each variant's: on a shared machine the load
    drifts within minutes, so only runs next to each other compare dtypes, not loads."""
    import numpy as np

    from particles._vocab import gd_vocab

    times = {name: [] for name in variants}
    for _ in range(rounds + 1):  # the first round compiles
        for name, kw in variants.items():
            common = dict(chunk=args.chunk, save_every=steps, devices=1, save_margins=False, **kw)
            t0 = time.perf_counter()
            gd_vocab(E, U, p, t, args.lr, steps, **common).W.block_until_ready()
            times[name].append((time.perf_counter() - t0) / steps * 1e3)
    times = {k: np.array(v[1:]) for k, v in times.items()}
    return dict(steps=steps, rounds=rounds, ms_per_step={k: round(float(np.min(v)), 2) for k, v in times.items()},
                speedup_median={k: round(float(np.median(times["float64"] / v)), 2) for k, v in times.items()},
                load=os.getloadavg())


def table(result) -> str:
    lines = [f"N = M = {result['N']}, d = {result['d']}, lr = {result['lr']}, chunk {result['chunk']}, one CPU device",
             "",
             "| variant | step | max abs margin gap | median | loss (float64) | relative loss gap | accuracy gap | "
             "ms/step (float64: ms/step) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['step']} | {r['max_margin_gap']:.2e} | {r['median_margin_gap']:.2e} | "
                     f"{r['loss64']:.6g} | {r['rel_loss_gap']:.2e} | {r['accuracy_gap']:.1e} | "
                     f"{r['ms_per_step']:.1f} ({r['ms_per_step64']:.1f}) |")
    sp = result.get("speed")
    if sp:
        ms = sp["ms_per_step"]
        up = sp.get("speedup_median", {})
        lines += ["", f"Speed, {sp['rounds']} interleaved rounds of {sp['steps']} steps (load {sp['load'][0]:.1f}): "
                  + ", ".join(f"{k} {v:.1f} ms/step (fastest round), {up.get(k, float('nan')):.2f}x float64 "
                              f"(median of the rounds' ratios)" for k, v in ms.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
