"""The gradient flow to t = 1e8 where the memory is too small (issue 11): steps and time.

    python benchmarks/flow_regimes.py            # N = 20, 64, 256 (the last takes minutes)
    python benchmarks/flow_regimes.py --quick    # N = 20 only

The regime of paper §3.4 as a researcher builds it: unit-norm Gaussian E (N x d), U = the
first M rows of the identity, Zipf(1.5) frequencies, f*(x) = x mod M. With d < N the
cross-entropy has a finite minimiser, the log-time flow is stiff near it, and `particles.flow`
switches to the implicit Kvaerno5 on the span coordinates (r_E x r_U unknowns instead of
N x M). Per size: the solver, the coordinates, the number of steps, the first call
(compilation included), a second call, and |loss - ce_minimizer's loss| at the end.

Writes JSON (default benchmarks/flow_regimes.json) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a source tree without installing
SIZES = ((20, 5, 4), (64, 8, 8), (256, 16, 16))


def problem(N, d, M, seed=0):
    import jax
    import numpy as np

    import particles as pt

    E = np.array(jax.random.normal(jax.random.key(seed), (N, d)))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    return pt.Problem.from_embeddings(E, np.eye(d)[:M], pt.zipf(N, 1.5), np.arange(N) % M)


def measure(N, d, M) -> dict:
    import particles as pt

    prob = problem(N, d, M)
    t0 = time.perf_counter()
    traj = pt.flow(prob, 1e8)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    traj = pt.flow(prob, 1e8)
    second = time.perf_counter() - t0
    ce = pt.theory.ce_minimizer(prob, tol=1e-12)
    meta = traj.metadata
    return dict(N=N, d=d, M=M, ok=bool(traj.ok), solver=meta.get("solver"), coordinates=meta.get("coordinates"),
                steps=meta.get("num_steps"), first_call=first, second_call=second,
                loss_gap=abs(float(traj.loss[-1]) - float(ce.loss)), steady_state_t=meta.get("steady_state_t"))


def table(result) -> str:
    lines = ["| N, d, M | solver (coordinates) | steps to t = 1e8 | first call (s) | second call (s) | "
             "\\|loss − CE minimum\\| |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['N']}, {r['d']}, {r['M']} | {r['solver']} ({r['coordinates']}) | {r['steps']} | "
                     f"{r['first_call']:.2f} | {r['second_call']:.2f} | {r['loss_gap']:.1e} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default=None, help="N:d:M,... (default: 20:5:4,64:8:8,256:16:16)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sizes = SIZES[:1] if args.quick else SIZES
    if args.sizes:
        sizes = [tuple(int(x) for x in s.split(":")) for s in args.sizes.split(",")]
    load0 = os.getloadavg()
    rows = []
    for N, d, M in sizes:
        rows.append(measure(N, d, M))
        print(f"N={N}: {rows[-1]['steps']} steps, {rows[-1]['second_call']:.2f} s", flush=True)
    result = dict(machine=dict(cores=os.cpu_count(), load_start=load0, load_end=os.getloadavg()), rows=rows)
    out = args.out or os.path.join(ROOT, "benchmarks", "flow_regimes" + ("_quick" if args.quick else "") + ".json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(table(result))


if __name__ == "__main__":
    main()
