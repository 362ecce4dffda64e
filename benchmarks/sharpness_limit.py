"""Sharpness at N = M = d = 1024: time, accuracy and Hessian-vector products (issue 16).

    python benchmarks/sharpness_limit.py          # N = M = d = 1024 (a few minutes on 2 cores)
    python benchmarks/sharpness_limit.py --quick  # N = M = d = 128

Problem: `particles.random_sphere(jax.random.key(4), n, n, n)` (the problem of
benchmarks/run.py's sharpness case). Points: S = 0 (uniform softmax rows: the Kronecker
path) and the scores after 10 GD steps at lr = 1 and lr = 1000.

Reference lambda at the trained points: unrestarted Lanczos with full reorthogonalisation,
run (in numpy, one product at a time) until its Ritz value stops moving (residual <= 1e-13
lambda). The same run gives the method's lower bound: the first number of products after
which the Ritz value is within 1e-8 of the reference -- what single-vector Krylov needs from
that start vector with an unlimited basis and an oracle stopping rule. At S = 0 the
check is thick-restart Lanczos held to an estimated 1e-10 (its top cluster converges slowly:
the old code spent 190 products there).

Writes JSON (default benchmarks/sharpness_limit.json) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def best(f, repeat=2):
    ts = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t0)
    return min(ts), out


def reference(op, x0, max_iter, log=None):
    """Unrestarted Lanczos (numpy, full reorthogonalisation twice): Ritz values per step."""
    import numpy as np

    n = x0.size
    Q = np.zeros((max_iter, n))
    q = np.array(x0, dtype=np.float64).ravel()
    q /= np.linalg.norm(q)
    alphas, betas, thetas, resids = [], [], [], []
    for j in range(max_iter):
        Q[j] = q
        w = np.array(op(q.reshape(x0.shape))).ravel()
        alphas.append(q @ w)
        for _ in range(2):
            w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
        beta = np.linalg.norm(w)
        betas.append(beta)
        T = np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1)
        th, Y = np.linalg.eigh(T)
        thetas.append(th[-1])
        resids.append(abs(beta * Y[-1, -1]))
        if resids[-1] <= 1e-13 * th[-1] or beta == 0:
            break
        q = w / beta
    return np.array(thetas), np.array(resids)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--lrs", default="1,1000")
    ap.add_argument("--max-ref", type=int, default=120, help="products of the reference run at most")
    ap.add_argument("--out", default=None, help="default benchmarks/sharpness_limit.json (sharpness_limit_quick.json with --quick)")
    args = ap.parse_args()
    if args.out is None:
        args.out = os.path.join(ROOT, "benchmarks", "sharpness_limit" + ("_quick" if args.quick else "") + ".json")
    if args.quick:
        args.n = 128

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    import particles
    from particles.theory import sharpness
    from particles.theory._sharpness import hessian_operator

    n = args.n
    big = particles.random_sphere(jax.random.key(4), n, n, n)
    hvp = jax.jit(lambda T, prob, S: hessian_operator(prob, S)(T))
    load0 = os.getloadavg()
    rows = []

    # Uniform rows: the Kronecker path.
    S0 = big.S0
    t_first, _ = best(lambda: float(sharpness(big, S0)), repeat=1)
    t0, lam0 = best(lambda: float(sharpness(big, S0)))
    x0 = np.asarray(jax.random.normal(jax.random.key(0), (1, n, n), big.dtype))[0]
    ref_S0 = None
    if not args.quick:
        # The Krylov route at S = 0, held to tol 1e-10: the check, and what Kronecker saves.
        t_l, (lam_l, info_l) = best(lambda: jax.block_until_ready(
            sharpness(big, S0, method="lanczos", precision="float64", tol=1e-10, restarts=60, return_info=True)),
            repeat=1)
        ref_S0 = dict(theta=float(lam_l), products=int(info_l["hvps"]), seconds=t_l,
                      estimate=float(info_l["error"]), converged=bool(info_l["converged"]))
    rows.append(dict(point="S = 0", method="kronecker (auto)", seconds=t0, first_call=t_first, lam=lam0,
                     hvps=0, rel_err=None if ref_S0 is None else abs(lam0 - ref_S0["theta"]) / ref_S0["theta"],
                     reference=ref_S0))
    print(rows[-1], file=sys.stderr, flush=True)

    t_hvp, _ = best(lambda: hvp(jnp.asarray(x0), big, S0).block_until_ready(), repeat=3)
    # The in-run baseline: numpy's two n^3 products (one product's GEMMs) on this machine now.
    A = np.asarray(x0)
    t_mm, _ = best(lambda: (A @ A, A @ A), repeat=3)
    for lr in [float(x) for x in args.lrs.split(",")]:
        S = particles.gd(big, lr, 10, save_scores=True).scores[-1]
        th, rs = reference(lambda T: hvp(jnp.asarray(T), big, S), x0, args.max_ref)
        lam_ref = th[-1]
        within = np.flatnonzero(np.abs(th - lam_ref) <= 1e-8 * lam_ref)
        bound = int(within[0]) + 1 if within.size else None
        gaps = None
        for label, kw in (("lanczos, float64", dict(method="lanczos", precision="float64")),
                          ("lanczos, mixed (the default here)", dict(method="lanczos", precision="mixed")),
                          ("lanczos, float64, block=4", dict(method="lanczos", precision="float64", block=4,
                                                             iters=32))):
            t_first, _ = best(lambda: sharpness(big, S, return_info=True, **kw)[0].block_until_ready(), repeat=1)
            t, (lam, info) = best(lambda: jax.block_until_ready(sharpness(big, S, return_info=True, **kw)))
            lam = float(lam)
            gaps = float(info["gap"]) / lam
            rows.append(dict(point=f"10 GD steps, lr = {lr:g}", method=label, seconds=t, first_call=t_first, lam=lam,
                             hvps=int(info["hvps"]), hvps32=int(info["hvps32"]), cycles=int(info["cycles"]),
                             sweeps=int(info["sweeps"]),
                             error_estimate=float(info["error"]), rel_err=abs(lam - lam_ref) / lam_ref,
                             krylov_bound=bound, reference=dict(theta=float(lam_ref), products=len(th),
                                                                resid=float(rs[-1] / lam_ref)),
                             ritz_gap=gaps))
            print(rows[-1], file=sys.stderr, flush=True)
    result = dict(n=n, machine=dict(cores=os.cpu_count(), load_start=load0, load_end=os.getloadavg()),
                  hvp_seconds=t_hvp, numpy_two_matmuls=t_mm, quiet_two_matmuls=4 * n**3 / 103e9, rows=rows)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(table(result))


def table(result) -> str:
    n = result["n"]
    scale = result["quiet_two_matmuls"] / result["numpy_two_matmuls"]
    lines = [f"N = M = d = {n}; one Hessian-vector product (float64) {result['hvp_seconds'] * 1e3:.0f} ms; numpy's two "
             f"{n}^3 products {result['numpy_two_matmuls'] * 1e3:.0f} ms in this run (quiet machine, 103 GFLOP/s: "
             f"{result['quiet_two_matmuls'] * 1e3:.0f} ms); 'quiet' = time x {scale:.2f}",
             "",
             "| point | method | time (s) | quiet (s) | first call (s) | products (f64 + f32) | Krylov lower bound | "
             "relative error | estimate | cycles | sweeps |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        prods = f"{r['hvps']}" + (f" + {r['hvps32']}" if r.get("hvps32") else "")
        err = "-" if r["rel_err"] is None else f"{r['rel_err']:.1e}"
        lines.append(f"| {r['point']} | {r['method']} | {r['seconds']:.2f} | {r['seconds'] * scale:.2f} | "
                     f"{r['first_call']:.2f} | {prods} | {r.get('krylov_bound', '-')} | {err} | "
                     f"{r.get('error_estimate', 0):.1e} | {r.get('cycles', '-')} | {r.get('sweeps', '-')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
