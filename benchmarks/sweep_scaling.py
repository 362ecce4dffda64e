"""Scaling of a large sweep over devices and processes (issue 16).

    python benchmarks/sweep_scaling.py          # 16,384 cells, n = 8, 1,000 GD steps (minutes on 2 cores)
    python benchmarks/sweep_scaling.py --quick  # 256 cells, 100 steps (seconds; checks that it runs)

`particles.sweep("equicorrelated", ...)` over lr x corr x zipf x seed on 1, 2 and 4 simulated
CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=k`, one process) and on 2
processes of one device each joined by `particles.distributed.initialize` (gloo). Every
configuration runs in its own child process (the device count is fixed when JAX starts) and
returns its wall time (the first call, compilation included, and a second call), the number
of chunks, and the digest of its result arrays, which must equal the 1-device run's.

Communication: each chunk's results are gathered on every process (`multihost_utils`
all-gather of the per-cell metrics: a few int64/float64 per cell); nothing else crosses
processes. The table reports those bytes per chunk.

Simulated devices share the machine's 2 cores, so their times measure the overhead of
sharding, not a speed-up.

Writes JSON (default benchmarks/sweep_scaling.json) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a source tree without installing

from benchmarks._processes import run_processes  # noqa: E402


def _axes(quick: bool) -> dict:
    import numpy as np

    k = 4 if quick else 32
    return {"lr": np.logspace(-1, 1.5, k).tolist(), "corr": np.linspace(0.0, 0.9, k).tolist(),
            "zipf": [0.0, 1.0, 2.0, 3.0], "seed": [0, 1, 2, 3], "n": [8]}


def child(args) -> dict:
    """One configuration, inside its own process (devices already set by the parent)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    import particles as pt
    from particles import distributed

    if args.process_id is not None:
        distributed.initialize(f"127.0.0.1:{args.port}", args.processes, args.process_id, timeout=120)
    axes = _axes(args.quick)
    steps = 100 if args.quick else 1000
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        result = pt.sweep("equicorrelated", axes, steps, chunk_size=args.chunk_size)
        times.append(time.perf_counter() - t0)
    digest = hashlib.sha256()
    cells = 0
    for name in sorted(result.outputs):
        a = np.ascontiguousarray(np.asarray(result.outputs[name]))
        cells = a.size
        digest.update(name.encode() + a.tobytes())
    per_cell = sum(np.asarray(result.outputs[n]).dtype.itemsize for n in result.outputs)
    return dict(devices=len(jax.devices()), processes=jax.process_count(), cells=cells, steps=steps,
                chunk_size=args.chunk_size, chunks=-(-cells // args.chunk_size), first_call=times[0],
                second_call=times[1], digest=digest.hexdigest(), gathered_bytes_per_chunk=per_cell * args.chunk_size)


def run_config(args, devices: int, processes: int = 1) -> dict:
    base = [sys.executable, os.path.abspath(__file__), "--child", "--chunk-size", str(args.chunk_size)]
    if args.quick:
        base.append("--quick")
    if processes == 1:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PARTICLES_QUIET="1")
        proc = subprocess.run(base, env=env, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode:
            raise RuntimeError(f"{devices} devices failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["config"] = f"{devices} device" + ("s" if devices > 1 else "")
        return r
    res = run_processes(base, processes, cwd=ROOT, timeout=args.timeout, env=dict(PARTICLES_QUIET="1"))
    r = res[0]
    r["config"] = f"{processes} processes x 1 device"
    r["digests_agree_across_processes"] = len({x["digest"] for x in res}) == 1
    return r


def table(result) -> str:
    rows = result["rows"]
    t1 = rows[0]["second_call"]
    lines = [f"{rows[0]['cells']} cells x {rows[0]['steps']} GD steps, chunks of {rows[0]['chunk_size']} cells",
             "",
             "| layout | devices | processes | first call (s, compile incl.) | second call (s) | vs 1 device | "
             "results equal the 1-device run | gathered per chunk |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['devices']} | {r['processes']} | {r['first_call']:.2f} | "
                     f"{r['second_call']:.2f} | {t1 / r['second_call']:.2f}x | {r['digest'] == rows[0]['digest']} | "
                     f"{r['gathered_bytes_per_chunk'] / 1e3:.1f} kB |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--configs", default="1,2,4,2p")
    ap.add_argument("--chunk-size", dest="chunk_size", type=int, default=1024)
    ap.add_argument("--out", default=None)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--process-id", dest="process_id", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    if args.quick:
        args.chunk_size = min(args.chunk_size, 64)
    out = args.out or os.path.join(ROOT, "benchmarks", "sweep_scaling" + ("_quick" if args.quick else "") + ".json")
    load0 = os.getloadavg()
    t_all = time.perf_counter()
    rows = []
    for c in args.configs.split(","):
        r = run_config(args, 1, processes=int(c[:-1])) if c.endswith("p") else run_config(args, int(c))
        rows.append(r)
        print(f"{r['config']}: {r['second_call']:.2f} s (first call {r['first_call']:.2f} s)", file=sys.stderr,
              flush=True)
    result = dict(machine=dict(cores=os.cpu_count(), load_start=load0, load_end=os.getloadavg()),
                  wall_s=time.perf_counter() - t_all, rows=rows)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(table(result))


if __name__ == "__main__":
    main()
