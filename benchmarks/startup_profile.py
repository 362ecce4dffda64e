"""Where the headline command's start-up time goes (BENCHMARKS.md, finding 7).

    python benchmarks/startup_profile.py             # best of 3 fresh processes
    python benchmarks/startup_profile.py --repeat 5
    python benchmarks/startup_profile.py --against 15d1e46   # also an older commit, same run

Runs `scripts/simulate.py --n 2 --corr 0.3` (with `--no-plot` and with its figure) in fresh
processes and splits each run's wall time into phases by timing the functions the command
calls: the imports, building the problem, the two GD runs (one batched call: trace, compile,
run), the gradient flow (trace, compile, solve), the analysis of the three runs
(summaries, theory tables, sharpness), saving, and the figure. "other" is what is left
(argument parsing, the starting sharpness, printing, interpreter shutdown).

Wall times on a shared 2-core machine move with its load and with the host's speed, so the
same run also times two references: a fresh `python -c "import jax"` and a pure-Python loop of
10⁷ additions; comparing them between two days' runs says how much of a difference is the
machine rather than the code. `--against REF` also times the headline (with `--no-plot` and
with its figure) of another commit, checked out in a temporary git worktree, interleaved with
this tree's runs: the ratio between the two is the code's, whatever the machine's speed that day.
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
import json, os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import particles
from particles.cli import _common as c, simulate as sim
phases = dict(imports=time.perf_counter() - t0)

def timed(owner, name, phase):
    f = getattr(owner, name)
    def g(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t
    setattr(owner, name, g)

timed(sim, "build_problem", "problem")
timed(sim, "_discrete", "gd (2 rates)")
timed(particles, "flow", "flow")
timed(sim, "analyse", "analysis")
timed(particles, "save", "save")
timed(sim, "_pictures", "figure")
code = c.run_main(sim.main, sys.argv[1:], prog="simulate.py")
phases["total"] = time.perf_counter() - t0
sys.stderr.write("PHASES " + json.dumps(phases) + "\\n")
sys.exit(code)
"""

LOOP = "import time; t = time.perf_counter(); s = 0\nfor i in range(10**7): s += i\nprint(time.perf_counter() - t)"


def fresh(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return time.perf_counter() - t0, proc.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--against", default=None, metavar="REF", help="a git commit to time in the same run")
    args = ap.parse_args()
    against = _against(args.against, args.repeat) if args.against else None
    load0 = os.getloadavg()
    refs = dict(import_jax=[], python_loop=[])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for plot in (False, True):
            best = None
            for r in range(args.repeat):
                refs["import_jax"].append(fresh([sys.executable, "-c", "import jax"])[0])
                refs["python_loop"].append(float(subprocess.run([sys.executable, "-c", LOOP], capture_output=True,
                                                                text=True).stdout))
                cmd = ["--n", "2", "--corr", "0.3", "--quiet", "--out", os.path.join(tmp, f"{plot}{r}")]
                wall, err = fresh([sys.executable, "-c", RUN.format(root=ROOT), *cmd, *([] if plot else ["--no-plot"])])
                phases = json.loads(next(x for x in err.splitlines() if x.startswith("PHASES "))[7:])
                phases["other"] = wall - sum(v for k, v in phases.items() if k != "total")
                phases["wall"] = wall
                if best is None or wall < best["wall"]:
                    best = phases
            rows.append(dict(plot=plot, phases=best))
    result = dict(load_start=load0, load_end=os.getloadavg(), cores=os.cpu_count(),
                  references={k: min(v) for k, v in refs.items()}, rows=rows, against=against)
    out = args.out or os.path.join(ROOT, "benchmarks", "startup_profile.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    ref = result["references"]
    print(f"load {load0[0]:.1f} -> {result['load_end'][0]:.1f}; fresh `import jax` {ref['import_jax']:.2f} s "
          f"10^7-addition loop {ref['python_loop']:.2f} s")
    names = ["imports", "problem", "gd (2 rates)", "flow", "analysis", "save", "figure", "other", "wall"]
    print("| phase | " + " | ".join("--no-plot" if not r["plot"] else "with the figure" for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{r['phases'].get(n, 0.0):.2f}" for r in rows) + " |")
    if against:
        for mode, key in (("--no-plot", ""), ("with the figure", "_figure")):
            theirs, ours = against["theirs" + key], against["ours" + key]
            print(f"{mode}, best of {args.repeat} interleaved: {against['ref']} {theirs:.2f} s, "
                  f"this tree {ours:.2f} s ({ours / theirs:.2f}x)")


def _against(ref: str, repeat: int) -> dict:
    """Best headline wall times (--no-plot and with the figure) of `ref` and of this tree, interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "tree")
        subprocess.run(["git", "worktree", "add", "--detach", tree, ref], cwd=ROOT, check=True, capture_output=True)
        try:
            times = {(root, plot): [] for plot in (False, True) for root in (tree, ROOT)}
            for r in range(repeat):
                for (root, plot), got in times.items():
                    cmd = [sys.executable, os.path.join(root, "scripts", "simulate.py"), "--n", "2", "--corr", "0.3",
                           "--quiet", "--out", os.path.join(tmp, f"run{r}{plot}{root == ROOT}")]
                    env = dict(os.environ, PYTHONPATH=root)
                    t0 = time.perf_counter()
                    subprocess.run(cmd + ([] if plot else ["--no-plot"]), cwd=root, env=env, check=True,
                                   capture_output=True)
                    got.append(time.perf_counter() - t0)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, capture_output=True)
    return dict(ref=ref, theirs=min(times[tree, False]), ours=min(times[ROOT, False]),
                theirs_figure=min(times[tree, True]), ours_figure=min(times[ROOT, True]),
                times_theirs=times[tree, False], times_ours=times[ROOT, False],
                times_theirs_figure=times[tree, True], times_ours_figure=times[ROOT, True])


if __name__ == "__main__":
    main()
