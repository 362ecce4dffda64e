"""What each start-up trick of the command line is worth (BENCHMARKS.md, finding 7).

    python benchmarks/startup_tricks.py            # best of 5 fresh processes per variant
    python benchmarks/startup_tricks.py --repeat 3

`python scripts/simulate.py --n 2 --corr 0.3 --no-plot` (and with its figure) as users run
it, against the same command with one trick changed at a time:

- `with_fast_exit`: `os._exit` after flushing instead of the interpreter's normal shutdown;
- `with_gc_thresholds`: the garbage collector's thresholds raised to (100000, 50, 1000).

Both were shipped, with the flow solved on a second thread while GD compiled, until they were
measured here (BENCHMARKS.md, finding 7): none saved the 10% a trick needs to stay.

The variants run the command's own `main` through `particles.cli._common.run_main`, the
console script's wrapper, with the trick turned off in the same process. Wall times of fresh
processes, best of `--repeat`; the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUN = """
import gc, os, sys
sys.path.insert(0, {root!r})
variant = {variant!r}
from particles.cli import _common as c, simulate
if variant == "with_gc_thresholds":
    gc.set_threshold(100_000, 50, 1000)
code = c.run_main(simulate.main, sys.argv[1:], prog="simulate.py")
sys.stdout.flush(); sys.stderr.flush()
if variant != "with_fast_exit":
    sys.exit(code)
os._exit(code)
"""


def once(variant: str, plot: bool, out: str) -> float:
    args = ["--n", "2", "--corr", "0.3", "--out", out, "--quiet"] + ([] if plot else ["--no-plot"])
    if variant == "as shipped":
        cmd = [sys.executable, os.path.join(ROOT, "scripts", "simulate.py"), *args]
    else:
        cmd = [sys.executable, "-c", RUN.format(root=ROOT, variant=variant), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{variant}: {proc.stderr[-2000:]}")
    return wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    variants = ["as shipped", "with_fast_exit", "with_gc_thresholds"]
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for plot in (False, True):
            # Interleaved rounds: a load change hits every variant alike.
            times = {v: [] for v in variants}
            for r in range(args.repeat):
                for v in variants:
                    times[v].append(once(v, plot, os.path.join(tmp, f"{r}-{len(rows)}-{v.replace(' ', '_')}")))
            for v in variants:
                rows.append(dict(variant=v, plot=plot, best=min(times[v]), times=times[v]))
    result = dict(load_start=load0, load_end=os.getloadavg(), cores=os.cpu_count(), rows=rows)
    out = args.out or os.path.join(ROOT, "benchmarks", "startup_tricks.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"load {load0[0]:.1f} -> {result['load_end'][0]:.1f}")
    print("| command | variant | best of %d (s) | vs as shipped |" % args.repeat)
    print("|---|---|---|---|")
    for r in rows:
        base = next(x["best"] for x in rows if x["plot"] == r["plot"] and x["variant"] == "as shipped")
        cmd = "simulate.py --n 2 --corr 0.3" + ("" if r["plot"] else " --no-plot")
        print(f"| {cmd} | {r['variant']} | {r['best']:.2f} | {r['best'] / base:.2f}x |")


if __name__ == "__main__":
    main()
