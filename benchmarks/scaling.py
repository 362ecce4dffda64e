"""Scaling of the vocabulary-scale GD step over devices and processes (issue 16).

    python benchmarks/scaling.py            # N = M = 16,384, d = 64, float64 (a few minutes on 2 cores)
    python benchmarks/scaling.py --quick    # N = M = 2,048, d = 32 (seconds; checks that it runs)
    python benchmarks/scaling.py --N 50000 --d 128 --configs 1x1,4x1

Every configuration runs in a child process, because the number of (simulated) devices is
fixed when JAX starts: `XLA_FLAGS=--xla_force_host_platform_device_count=k` gives k CPU
devices in one process; `--processes 2` starts two processes that join with
`jax.distributed.initialize` over gloo, one CPU device each. A configuration "kxu" is k
devices with U's rows split over u of them (the inputs' rows over k / u).

Per configuration: compile time, best step time, the W after one step (checked against the
1-device run), the compiled step's memory statistics per device (`memory_analysis()`), the
device's share of the arrays computed by hand, and the bytes each device all-reduces per
step. Simulated devices share the machine's cores, so their step times measure overhead,
not speed-up; the projection to 8 GPUs at the end is a model, stated as such.

Writes JSON (default benchmarks/scaling.json) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a source tree without installing

from benchmarks._processes import run_processes  # noqa: E402


def _problem(N, M, d, seed=5):
    import numpy as np

    rng = np.random.default_rng(seed)
    E = rng.normal(size=(N, d))
    U = rng.normal(size=(M, d))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    p = 1.0 / np.arange(1, N + 1)
    p /= p.sum()
    return E, U, p, np.arange(N) % M


def child(args) -> dict:
    """One configuration, inside its own process (devices already set by the parent)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.process_id is not None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}", num_processes=args.processes,
                                   process_id=args.process_id)
    import numpy as np

    from particles import _vocab_kernel as K
    from particles._vocab import gd_vocab, place, vocab_plan

    N, M, d = args.N, args.N if args.M is None else args.M, args.d
    E, U, p, t = _problem(N, M, d)
    plan = vocab_plan(N, M, d, devices=None, u_shards=args.u_shards, chunk=args.chunk)
    Ep, Up, pp, tp = place(plan, E, U, p, t, np.float64, np.float64)
    from particles._vocab import _replicated

    W0 = _replicated(plan, np.zeros((d, d)))
    lr = _replicated(plan, np.asarray(1.0))
    step = jax.jit(lambda W, E, U, p, t, lr: K.step(W, E, U, p, t, lr, mesh=plan.mesh, chunk=plan.chunk, M=M,
                                                     split=plan.split))
    t0 = time.perf_counter()
    compiled = step.lower(W0, Ep, Up, pp, tp, lr).compile()
    t_compile = time.perf_counter() - t0
    W1 = compiled(W0, Ep, Up, pp, tp, lr)
    W1.block_until_ready()
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        compiled(W0, Ep, Up, pp, tp, lr).block_until_ready()
        times.append(time.perf_counter() - t0)
    mem = compiled.memory_analysis()
    stats = None
    if mem is not None:
        stats = dict(argument=mem.argument_size_in_bytes, output=mem.output_size_in_bytes,
                     temp=mem.temp_size_in_bytes, alias=mem.alias_size_in_bytes)
    k_r, k_c = plan.row_shards, plan.u_shards
    n_r, m_b = plan.N_pad // k_r, plan.M_pad // k_c
    share = dict(E=n_r * d * 8, p_targets=n_r * 12, U=m_b * d * 8, W_lr=d * d * 8 + 8)
    working = 2 * plan.chunk * m_b * 8
    # Per step and device: the gradient all-reduce (d^2 float64); with U split, per chunk one
    # pmax of c row maxima and one psum of (2, c) sums over the "cols" devices.
    comm = dict(gradient=d * d * 8, softmax=(3 * n_r * 8 if plan.split else 0))
    out = dict(config=f"{k_r * k_c}x{k_c}", devices=k_r * k_c, u_shards=k_c, processes=jax.process_count(),
               N=N, M=M, d=d, chunk=plan.chunk, N_pad=plan.N_pad, M_pad=plan.M_pad, t_compile=t_compile,
               t_step=min(times), times=times, memory=stats, share=share, working_set=working,
               plan_bytes=plan.bytes_per_device, comm=comm,
               W1=np.asarray(W1.addressable_data(0)).tolist() if args.return_w else None,
               W1_norm=float(np.linalg.norm(np.asarray(W1.addressable_data(0)))))
    if args.gd_check:
        # The whole driver on this layout (multi-process included): 2 steps, rows replicated.
        traj = gd_vocab(E, U, p, t, 1.0, 2, chunk=args.chunk, save_margins=False, u_shards=args.u_shards)
        out["gd_loss"] = [float(x) for x in np.asarray(traj.loss.addressable_data(0))]
    return out


def run_config(args, devices: int, u: int, processes: int = 1) -> dict:
    base = [sys.executable, os.path.abspath(__file__), "--child", "--N", str(args.N), "--d", str(args.d),
            "--chunk", str(args.chunk), "--repeat", str(args.repeat), "--u-shards", str(u), "--return-w",
            "--gd-check"]
    if args.M is not None:
        base += ["--M", str(args.M)]
    if processes == 1:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
        proc = subprocess.run(base, env=env, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode:
            raise RuntimeError(f"{devices}x{u} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    res = run_processes(base, processes, cwd=ROOT, timeout=args.timeout)
    r = res[0]
    r["config"] = f"{processes} processes x 1 device"
    r["t_step_per_process"] = [x["t_step"] for x in res]
    return r


def gpu_projection(N, M, d, k=8):
    """A model, not a measurement: 8 H100 SXM (67 TFLOP/s FP64 tensor core at 70%, 3.35 TB/s
    HBM, NVLink ring all-reduce at 450 GB/s per GPU plus 20 us latency)."""
    flops = 4 * N * M * d + 4 * N * d * d
    t_flop = flops / k / (0.7 * 67e12)
    # the chunk's scores: written, read for max/exp/sum, written as the residual, read for R U
    t_mem = 4 * (N / k) * M * 8 / 3.35e12
    t_comm = 2 * (k - 1) / k * d * d * 8 / 450e9 + 20e-6
    return dict(N=N, M=M, d=d, gpus=k, flops=flops, t_flops=t_flop, t_memory=t_mem, t_allreduce=t_comm,
                t_step=t_flop + t_mem + t_comm, t_step_1gpu=flops / (0.7 * 67e12) + 4 * N * M * 8 / 3.35e12)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--N", type=int, default=16384)
    ap.add_argument("--M", type=int, default=None)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--configs", default="1x1,2x1,4x1,4x2,4x4,2p")
    ap.add_argument("--out", default=None, help="default benchmarks/scaling.json (scaling_quick.json with --quick)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--u-shards", dest="u_shards", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--process-id", dest="process_id", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--return-w", dest="return_w", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--gd-check", dest="gd_check", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.out is None:
        args.out = os.path.join(ROOT, "benchmarks", "scaling" + ("_quick" if args.quick else "") + ".json")
    if args.child:
        print(json.dumps(child(args)))
        return
    if args.quick:
        args.N, args.d, args.repeat = 2048, 32, 2
    import numpy as np

    load0 = os.getloadavg()
    t_all = time.perf_counter()
    rows = []
    for c in args.configs.split(","):
        if c.endswith("p"):
            r = run_config(args, 1, 1, processes=int(c[:-1]))
        else:
            k, u = (int(x) for x in c.split("x"))
            r = run_config(args, k, u)
        rows.append(r)
        print(f"{r['config']}: step {r['t_step']:.3f} s, compile {r['t_compile']:.2f} s", file=sys.stderr, flush=True)
    ref = np.asarray(rows[0]["W1"])
    for r in rows:
        r["W1_maxdiff_vs_first"] = float(np.max(np.abs(np.asarray(r.pop("W1")) - ref)))
    M = args.N if args.M is None else args.M
    proj = [gpu_projection(args.N, M, args.d), gpu_projection(50_000, 50_000, 128)]
    result = dict(machine=dict(cores=os.cpu_count(), load_start=load0, load_end=os.getloadavg()),
                  wall_s=time.perf_counter() - t_all, rows=rows, gpu_projection=proj)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(table(result))


def table(result) -> str:
    rows = result["rows"]
    t1 = rows[0]["t_step"]
    lines = ["| layout | devices (rows x U) | chunk | step (s) | vs 1 device | compile (s) | W after 1 step, max diff vs 1 device | gd_vocab loss (2 steps) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        k, u = r["devices"], r["u_shards"]
        lines.append(f"| {r['config']} | {k // u} x {u} | {r['chunk']} | {r['t_step']:.3f} | {t1 / r['t_step']:.2f}x | "
                     f"{r['t_compile']:.2f} | {r['W1_maxdiff_vs_first']:.1e} | {r.get('gd_loss', [None])[-1]:.12g} |")
    lines += ["", "| layout | XLA argument / output / temp per device (MB) | arrays' share (MB) | + chunk working set (MB) | "
              "XLA total / share | XLA total / (share + working set) | all-reduced per step per device |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        share = sum(r["share"].values())
        m = r["memory"]
        if m is None:
            xla, ratio1, ratio2 = "no statistics", "-", "-"
        else:
            tot = m["argument"] + m["output"] + m["temp"]
            xla = f"{m['argument'] / 1e6:.1f} / {m['output'] / 1e6:.3f} / {m['temp'] / 1e6:.1f}"
            ratio1, ratio2 = f"{tot / share:.2f}", f"{tot / (share + r['working_set']):.2f}"
        c = r["comm"]
        comm = f"{c['gradient'] / 1e3:.1f} kB gradient" + (f" + {c['softmax'] / 1e3:.0f} kB softmax rows" if c["softmax"] else "")
        lines.append(f"| {r['config']} | {xla} | {share / 1e6:.1f} | {(share + r['working_set']) / 1e6:.1f} | {ratio1} | "
                     f"{ratio2} | {comm} |")
    lines += ["", "| projection (model, not measured) | FLOP/step | per GPU: matmul | softmax memory | all-reduce | step | 1 GPU |",
              "|---|---|---|---|---|---|---|"]
    for g in result["gpu_projection"]:
        lines.append(f"| N=M={g['N']}, d={g['d']}, {g['gpus']} x H100 FP64 | {g['flops'] / 1e9:.0f} G | "
                     f"{g['t_flops'] * 1e3:.2f} ms | {g['t_memory'] * 1e3:.2f} ms | {g['t_allreduce'] * 1e6:.0f} us | "
                     f"{g['t_step'] * 1e3:.2f} ms | {g['t_step_1gpu'] * 1e3:.1f} ms |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
