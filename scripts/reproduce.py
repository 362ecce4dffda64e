#!/usr/bin/env python
"""Regenerate the paper's experiments (paper-notes §4) into figures/, with figures/REPORT.md.

    python scripts/reproduce.py --all              # experiments 1-7 (about 3 minutes on 2 cores, 2.5 of them the Transformers)
    python scripts/reproduce.py --figure spike     # one of them
    python scripts/reproduce.py --figure transformer   # 7: particles.transformer.reproduce

Figures: landscapes (1), spike (2), time_to_accuracy (3), sharpness (4), forgetting (5),
memory (6), transformer (7). Each is written as PNG and PDF; REPORT.md puts the key numbers
of every figure made beside the theory's predictions (a section per figure, merged with the
sections of earlier runs). The paper's random embeddings came from an unreproducible
stream: here they are drawn with `particles.random_sphere` and a fixed key (--seed), and
the report says so.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _cli  # noqa: E402

FIGURES = ("landscapes", "spike", "time_to_accuracy", "sharpness", "forgetting", "memory", "transformer")
NUMBERED = {str(i + 1): name for i, name in enumerate(FIGURES)}


def build_parser():
    p = _cli.ArgumentParser(prog="reproduce.py", description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--figure", action="append", help=f"one of {', '.join(FIGURES)} (or 1-7); repeatable")
    g.add_argument("--all", action="store_true", help="experiments 1-7 (7, the Transformers, in quick mode unless --full)")
    p.add_argument("--out", default="figures", help="output folder (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="key of the random embeddings (default %(default)s)")
    p.add_argument("--full", action="store_true", help="transformer: the paper's full runs (slow)")
    _cli.add_common(p, json_flag=False)
    return p


# ------------------------------------------------------------------ helpers
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "legend.fontsize": 7.5, "figure.dpi": 100})
    return plt


def _save(fig, out, name, files):
    for ext in ("png", "pdf"):
        _cli.save_figure(fig, os.path.join(out, f"{name}.{ext}"), dpi=150)
    files += [f"{name}.png", f"{name}.pdf"]
    _plt().close(fig)


def _circle_problem(key, N, a, gamma0):
    """d = M = 2: e_x random on the unit circle (fixed key), U = I, f*(x) = x mod 2, Zipf(a), γ(0) = gamma0."""
    import jax
    import numpy as np

    import particles

    E = np.array(jax.random.normal(key, (N, 2)))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    # γ = W^T (u_0 - u_1) with U = I: W0 = (1/2, -1/2) γ0^T gives W0^T (1, -1) = γ0.
    W0 = np.outer([0.5, -0.5], gamma0)
    return particles.Problem.from_embeddings(E, np.eye(2), particles.zipf(N, a), np.arange(N) % 2, W0=W0)


def _gamma(problem, traj):
    import numpy as np

    import analysis

    return analysis.gamma_of_scores(problem, np.asarray(traj.scores))


def _fmt(x, d=4):
    try:
        return f"{float(x):.{d}g}"
    except (TypeError, ValueError):
        return str(x)


# ------------------------------------------------------------- experiments
def fig_landscapes(out, ctx):
    import numpy as np

    import analysis
    import particles
    from particles import theory

    plt = _plt()
    p1, alphas = 0.75, (-0.5, 0.5, 0.95)
    fig, axs = plt.subplots(2, 3, figsize=(12, 7.6), constrained_layout=True)
    rows = []
    for j, a in enumerate(alphas):
        P = particles.two_particles(a, p1)
        for i, ext in enumerate(((-1, 1, -1, 1), (-10, 10, -10, 10))):
            analysis.plot_landscape(axs[i, j], P, extent=ext, grid=50)
            axs[i, j].set_title(f"α = {a:g}, p = (0.75, 0.25), γ ∈ [{ext[0]}, {ext[1]}]²")
        # The perfect-accuracy directions: γ on the unit circle with both margins > 0.
        th = np.linspace(0, 2 * np.pi, 200_001)[:-1]
        g = np.stack([np.cos(th), np.sin(th)], 1)
        m = np.asarray(theory.two_particles_margins_from_gamma(g, a))
        measured = np.degrees(2 * np.pi * np.mean(np.all(m > 0, axis=1)))
        rows.append((a, float(np.degrees(theory.two_particles_wedge_angle(a))), measured))
    fig.suptitle("Two particles: cross-entropy contours over the 0-1 loss in the γ-plane (50×50 grid)")
    files = []
    _save(fig, out, "landscapes", files)
    text = ["| α | wedge angle, theory arccos(α) (°) | measured on the circle (°) |", "|---|---|---|"]
    text += [f"| {a:g} | {t:.3f} | {m:.3f} |" for a, t, m in rows]
    return files, text, dict(wedge=rows)


def fig_spike(out, ctx):
    import numpy as np

    import analysis
    import particles
    from particles import theory

    plt = _plt()
    a, p1, steps = 0.95, 0.75, 35
    P = particles.two_particles(a, p1)
    runs = {lr: particles.gd(P, lr, steps, save_scores=True) for lr in (10.0, 1.0)}
    fig, axs = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    analysis.plot_landscape(axs[0], P, extent=(-1, 8, -17, 10), grid=80,
                            trajectories=[(f"GD η={lr:g}", _gamma(P, t)) for lr, t in runs.items()])
    axs[0].set_title("γ-trajectories over the landscape (α = 0.95, p₁ = 0.75)")
    for k, (lr, t) in enumerate(runs.items()):
        analysis.plot_losses(axs[1 + k], t, color=analysis.OKABE_ITO[k])
        axs[1 + k].set_title(f"GD η = {lr:g}: loss and 0-1 loss ({steps} steps)")
    files = []
    _save(fig, out, "spike", files)
    lam0 = float(theory.two_particles_sharpness0(a, p1))
    text = [f"Sharpness at W = 0: λ₀ = {lam0:.4g}, stability limit 2/λ₀ = {2 / lam0:.4g}. "
            f"The rare token is forgotten at the first step iff α > p₂/p₁ = {(1 - p1) / p1:.4g} "
            f"(theory: {bool(theory.two_particles_forgets(a, p1))}).", "",
            "| η | η·λ₀/2 | first-step margins, theory | simulated | spikes (step: height) | first 100% step | final loss |",
            "|---|---|---|---|---|---|---|"]
    nums = {}
    for lr, t in runs.items():
        th1 = np.asarray(theory.two_particles_first_step(lr, a, p1))
        sp = analysis.loss_spikes(t)
        ffa = analysis.first_full_accuracy(t)
        text.append(f"| {lr:g} | {lr * lam0 / 2:.3g} | ({th1[0]:.4g}, {th1[1]:.4g}) | "
                    f"({_fmt(t.margins[1, 0])}, {_fmt(t.margins[1, 1])}) | "
                    + (", ".join(f"{s.step:g}: +{s.height:.3g}" for s in sp) or "none")
                    + f" | {'never' if ffa is None else ffa} | {_fmt(t.loss[-1])} |")
        nums[lr] = dict(spikes=[s.to_json() for s in sp], first_full=ffa, final_loss=float(t.loss[-1]))
    return files, text, nums


def fig_time_to_accuracy(out, ctx):
    import numpy as np

    from particles import theory
    from particles._sweep import sweep_gd

    plt = _plt()
    log_odds = np.logspace(-0.5, 0.5, 10)  # p1 = sigmoid(logspace(-0.5, 0.5, 10)) as in the paper
    axes = {"lr": np.logspace(-1, 1, 10), "corr": np.linspace(0.5, 1, 10), "log_odds": log_odds}
    res = sweep_gd(axes, 1000, progress=ctx["bars"])
    T = res.outputs["first_full_accuracy"].astype(float)
    files = []
    fig, axs = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    from matplotlib import colors

    mid = {"corr": 4, "log_odds": 4}
    for ax, (name, xs, Z, fixed) in zip(axs, (
            ("input correlation α", axes["corr"], T[:, :, mid["log_odds"]], f"log(p₁/p₂) = {log_odds[4]:.3g}"),
            ("log-odds log(p₁/p₂)", log_odds, T[:, mid["corr"], :], f"α = {axes['corr'][4]:.3g}"))):
        Zm = np.ma.masked_less(Z, 0)
        X, Y = np.meshgrid(xs, axes["lr"])
        cs = ax.contourf(X, Y, Zm, levels=np.logspace(0, 3, 13), norm=colors.LogNorm(), cmap="viridis")
        never = Z < 0
        if never.any():
            ax.scatter(X[never], Y[never], marker="x", color="0.3", s=18, label="never within 1000 steps")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), frameon=False)
        ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("learning rate η")
        ax.set_title(f"first step of 100% accuracy ({fixed})")
        fig.colorbar(cs, ax=ax, label="steps (log scale)")
    _save(fig, out, "time_to_accuracy", files)
    # Theory: one step gives full accuracy iff corr <= p2/p1 (and the step is not too large).
    lr_g, c_g, lo_g = np.meshgrid(axes["lr"], axes["corr"], log_odds, indexing="ij")
    p1_g = 1 / (1 + np.exp(-lo_g))
    forgets = np.asarray(theory.two_particles_forgets(c_g, p1_g))
    one = T == 1
    agree = np.mean(one[~forgets]) if (~forgets).any() else float("nan")
    text = [f"Grid: η = logspace(−1, 1, 10), α = linspace(0.5, 1, 10), log(p₁/p₂) = logspace(−0.5, 0.5, 10); "
            f"1000 GD steps per cell, {res.shape[0] * res.shape[1] * res.shape[2]} cells in "
            f"{res.chunks_total} compiled call(s).",
            f"- cells never reaching 100% within 1000 steps: {int(np.sum(T < 0))}, of which {int(np.sum(T[:, -1, :] < 0))} "
            f"at α = 1 (distinct targets with identical inputs are unlearnable); non-finite cells: {res.n_bad}",
            f"- theory: one step from W = 0 already gives 100% iff α ≤ p₂/p₁: {int((~forgets).sum())} cells satisfy it; "
            f"of these, {int(one[~forgets].sum())} are perfect at step 1" + (f" ({agree:.0%})" if (~forgets).any() else "") +
            f"; cells where the rare token is forgotten first and still perfect at step 1: {int(one[forgets].sum())}",
            "", "Steps to 100% accuracy at log(p₁/p₂) = " + f"{log_odds[4]:.3g} (rows η, columns α):", "",
            "| η \\ α | " + " | ".join(f"{c:.3g}" for c in axes["corr"]) + " |",
            "|---" * (len(axes["corr"]) + 1) + "|"]
    for i, lr in enumerate(axes["lr"]):
        text.append(f"| {lr:.3g} | " + " | ".join("never" if v < 0 else f"{int(v)}" for v in T[i, :, 4]) + " |")
    return files, text, dict(grid=T.tolist())


def fig_sharpness(out, ctx):
    import jax
    import numpy as np

    import analysis
    import particles
    from particles import theory

    plt = _plt()
    key = jax.random.key(ctx["seed"])
    setups = {3: (-5.0, -5.0), 30: (-5.0, 5.0)}
    fig, axs = plt.subplots(2, 3, figsize=(13, 7.6), constrained_layout=True)
    text = ["| N | η | loss at step 35 | λ_max start → end | 2/η | after 3000 steps (tol 1e-9) |", "|---|---|---|---|---|---|"]
    nums = {}
    for r, (N, g0) in enumerate(setups.items()):
        P = _circle_problem(jax.random.fold_in(key, N), N, 1.0, g0)
        runs = {lr: particles.gd(P, lr, 35, save_scores=True) for lr in (10.0, 1.0)}
        for k, (lr, t) in enumerate(runs.items()):
            analysis.plot_losses(axs[r, 0], t, label=f"η={lr:g}", color=analysis.OKABE_ITO[k])
        axs[r, 0].set_title(f"N = {N}: losses (35 GD steps, γ₀ = {g0})")
        # Sharpness landscape over the γ-plane, with the paths on top.
        ext = (-8, 8, -8, 8)
        g1, g2 = np.meshgrid(np.linspace(*ext[:2], 60), np.linspace(*ext[2:], 60))
        d = np.stack([g1, g2], -1) @ np.asarray(P.E).T
        S = np.stack([d / 2, -d / 2], -1).reshape(-1, N, 2)
        lam = np.asarray(theory.two_class_sharpness(P, S)).reshape(g1.shape)
        cs = axs[r, 1].contourf(g1, g2, lam, levels=np.logspace(np.log10(max(lam.min(), 1e-6)),
                                                                 np.log10(lam.max()), 14), cmap="viridis",
                                norm=__import__("matplotlib").colors.LogNorm())
        fig.colorbar(cs, ax=axs[r, 1], label="λ_max(∇²L)", format="%.2g")
        for k, (lr, t) in enumerate(runs.items()):
            g = _gamma(P, t)
            inside = np.all((g >= -8) & (g <= 8), axis=1)
            axs[r, 1].plot(g[:, 0], g[:, 1], "-o", ms=2.5, lw=1, color=analysis.OKABE_ITO[k + 1],
                           label=f"GD η={lr:g}" + ("" if inside.all() else " (leaves the window)"))
        axs[r, 1].set_xlim(*ext[:2])
        axs[r, 1].set_ylim(*ext[2:])
        axs[r, 1].set_xlabel("γ₁ (dimensionless)")
        axs[r, 1].set_ylabel("γ₂ (dimensionless)")
        axs[r, 1].legend(loc="lower right")
        axs[r, 1].set_title(f"N = {N}: sharpness landscape")
        for k, (lr, t) in enumerate(runs.items()):
            lam_t = np.asarray(theory.sharpness(P, t.scores))
            c = analysis.OKABE_ITO[k + 1]
            axs[r, 2].plot(np.asarray(t.steps), lam_t, color=c, lw=1.5, label=f"λ_max along GD, η={lr:g}")
            axs[r, 2].axhline(2 / lr, color=c, ls="--", lw=1.1, label=f"stability limit 2/η = {2 / lr:g}")
            # 35 steps show the transient; whether GD settles, and into which cycle, needs the
            # same run continued (3000 steps) and a tight tolerance.
            long = particles.gd(P, lr, 3000)
            cyc = analysis.detect_cycle(long, tol=1e-9, tail=64)
            period = None if cyc is None else cyc.period
            text.append(f"| {N} | {lr:g} | {_fmt(t.loss[-1])} | {lam_t[0]:.4g} → {lam_t[-1]:.4g} | {2 / lr:.3g} | "
                        + ("no cycle up to period 8" if period is None else ("converged (fixed point)" if period == 1 else
                            f"period-{period} cycle, losses {', '.join(f'{x:.4g}' for x in cyc.loss)}, "
                            f"margin amplitude {cyc.amplitude:.3g}")) + " |")
            nums[f"N{N}_lr{lr:g}"] = dict(final_loss=float(t.loss[-1]), lam=[float(lam_t[0]), float(lam_t[-1])],
                                         period=period, cycle_losses=None if cyc is None else cyc.loss.tolist())
        axs[r, 2].set_yscale("log")
        axs[r, 2].set_xlabel("step")
        axs[r, 2].set_ylabel("sharpness λ_max(∇²L)")
        axs[r, 2].legend(loc="lower right")
        axs[r, 2].set_title(f"N = {N}: sharpness along GD")
    fig.suptitle("Sharpness along GD (d = M = 2, Zipf a = 1, random e_x on the circle)")
    files = []
    _save(fig, out, "sharpness", files)
    text.insert(0, "Paper: N = 30 with η = 10 locks into a period-2 cycle (GD cannot converge where "
                   "η > 2/λ_max at W_CE). Embeddings: random_sphere-style Gaussian directions on the circle with "
                   f"key fold_in(key({ctx['seed']}), N).\n")
    return files, text, nums


def fig_forgetting(out, ctx):
    import jax
    import numpy as np

    import analysis
    import particles
    from particles import theory

    plt = _plt()
    key = jax.random.key(ctx["seed"])
    fig, axs = plt.subplots(1, 3, figsize=(14, 4.3), constrained_layout=True)
    text = ["| N | L01(W_CE) | min L01 (exact circle sweep) | gap 𝓔 | CE at W_CE |", "|---|---|---|---|---|"]
    nums = {}
    k = 0
    for j, N in enumerate((3, 30)):
        # A random draw can be separable (no finite W_CE, no forgetting to show): draw again
        # with the next key until it is not, and say which key was used.
        for k in range(50):
            P = _circle_problem(jax.random.fold_in(key, 1000 * N + k), N, 1.0, (0.0, 0.0))
            try:
                ce = theory.ce_minimizer(P)
                break
            except ValueError as e:
                if "separable" not in str(e):
                    raise
        nums[f"N{N}_key"] = f"fold_in(key({ctx['seed']}), {1000 * N + k})"
        best = theory.best_zero_one(P)
        g_ce = analysis.gamma_of_scores(P, np.asarray(ce.scores))
        ext = (min(-10, g_ce[0] - 2), max(10, g_ce[0] + 2), min(-10, g_ce[1] - 2), max(10, g_ce[1] + 2))
        analysis.plot_landscape(axs[j], P, extent=ext, grid=60, mark={"CE minimizer W_CE": g_ce})
        gap = float(ce.zero_one) - float(best.zero_one)
        axs[j].set_title(f"N = {N}: landscape; $\\mathcal{{E}}$ = L01(W_CE) − min L01 = {gap:.3g}")
        text.append(f"| {N} | {float(ce.zero_one):.4g} | {float(best.zero_one):.4g} | {gap:.4g} | {float(ce.loss):.4g} |")
        nums[f"N{N}"] = dict(L01_ce=float(ce.zero_one), L01_best=float(best.zero_one), gap=gap)
    text.append("")
    text.append("Embedding keys (separable draws skipped): " + ", ".join(f"N = {N}: {nums[f'N{N}_key']}" for N in (3, 30)))
    # SGD from a good point: reaches the best 0-1, then drifts to W_CE and forgets.
    for k in range(50):
        P = _circle_problem(jax.random.fold_in(key, 10_000 + k), 10, 2.0, (7.5, 2.5))
        try:
            theory.ce_minimizer(P)
            break
        except ValueError as e:
            if "separable" not in str(e):
                raise
    # The paper starts at γ0 = (7.5, 2.5), a point of best 0-1 loss for its own embeddings.
    # Ours differ, so start at the same distance from 0 in the direction of the exact best
    # 0-1 solution: then the run starts where the paper's did, at the 0-1 optimum.
    best = theory.best_zero_one(P)
    g_best = np.asarray(best.W).T @ np.array([1.0, -1.0])
    g_start = g_best / np.linalg.norm(g_best) * np.hypot(7.5, 2.5)
    P = _circle_problem(jax.random.fold_in(key, 10_000 + k), 10, 2.0, tuple(g_start))
    t = particles.sgd(P, 0.1, 1000, 10, jax.random.fold_in(key, 1))
    ce, best = theory.ce_minimizer(P), theory.best_zero_one(P)
    ax = axs[2]
    steps = np.asarray(t.steps)
    ax.plot(steps, np.asarray(t.loss) / 2, color=analysis.OKABE_ITO[0], label="L / 2 (cross-entropy, nats)")
    ax.plot(steps, np.asarray(t.zero_one), color=analysis.OKABE_ITO[1], label="L01 (0-1 loss)")
    ax.axhline(float(best.zero_one), color=analysis.OKABE_ITO[2], ls="--", label=f"min L01 = {float(best.zero_one):.3g}")
    ax.axhline(float(ce.zero_one), color=analysis.OKABE_ITO[3], ls=":", label=f"L01(W_CE) = {float(ce.zero_one):.3g}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"SGD, N = 10, Zipf a = 2, batch 10, η = 0.1, γ₀ = ({g_start[0]:.2f}, {g_start[1]:.2f})")
    ax.legend(loc="center right")
    files = []
    _save(fig, out, "forgetting", files)
    zo = np.asarray(t.zero_one)
    kmin = int(np.argmin(zo))
    text += ["", f"SGD (N = 10, Zipf a = 2, batch 10, η = 0.1, 1000 steps, γ₀ = ({g_start[0]:.3g}, {g_start[1]:.3g}), "
                 "the best-0-1 direction at the paper's |γ₀| = |(7.5, 2.5)|): 0-1 loss "
                 f"{zo[0]:.4g} at start, lowest {zo[kmin]:.4g} at step {int(steps[kmin])} (best achievable "
                 f"{float(best.zero_one):.4g}), final {zo[-1]:.4g} (W_CE has {float(ce.zero_one):.4g}); final CE "
                 f"{float(t.loss[-1]):.4g} vs min CE {float(ce.loss):.4g}."]
    nums["sgd"] = dict(start=float(zo[0]), lowest=float(zo[kmin]), lowest_step=int(steps[kmin]), final=float(zo[-1]))
    return files, text, nums


def fig_memory(out, ctx):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import analysis
    import particles

    plt = _plt()
    key = jax.random.key(ctx["seed"])
    ds, lrs = (3, 5, 10), (3.0, 10.0, 20.0)
    fig, axs = plt.subplots(2, 3, figsize=(13, 7.4), constrained_layout=True)
    text = ["| d | η | final loss | spikes | margin oscillations (per token) | min final margin |",
            "|---|---|---|---|---|---|"]
    nums = {}
    for j, d in enumerate(ds):
        P = particles.random_sphere(jax.random.fold_in(key, d), 5, 5, d, p=particles.zipf(5, 1.0),
                                    targets=np.arange(5))
        batch = particles.gd(P, jnp.asarray(lrs), 100)
        for k, lr in enumerate(lrs):
            t = batch[k]
            axs[0, j].plot(np.asarray(t.steps), np.asarray(t.loss), color=analysis.OKABE_ITO[k], label=f"η={lr:g}")
            if k == len(lrs) - 1:
                m = np.asarray(t.margins)
                for x in range(5):
                    axs[1, j].plot(np.asarray(t.steps), m[:, x], color=analysis.OKABE_ITO[x], lw=1.2,
                                   label=f"m({x}), p={float(P.p[x]):.2f}")
            sp = analysis.loss_spikes(t)
            osc = analysis.oscillations(t)
            text.append(f"| {d} | {lr:g} | {_fmt(t.loss[-1])} | {len(sp)} | {list(map(int, osc))} | "
                        f"{_fmt(np.min(np.asarray(t.margins)[-1]))} |")
            nums[f"d{d}_lr{lr:g}"] = dict(final_loss=float(t.loss[-1]), spikes=len(sp), oscillations=osc.tolist())
        axs[0, j].set_yscale("log")
        axs[0, j].set_xlabel("step")
        axs[0, j].set_ylabel("cross-entropy loss (nats)")
        axs[0, j].set_title(f"N = M = 5, d = {d} ({'d ≥ N' if d >= 5 else 'd < N'})")
        axs[0, j].legend()
        axs[1, j].axhline(0, color="0.6", lw=0.6)
        axs[1, j].set_xlabel("step")
        axs[1, j].set_ylabel("margin m(x)")
        axs[1, j].set_title(f"d = {d}: margins of all tokens, η = {lrs[-1]:g}")
        axs[1, j].legend(ncol=2)
    fig.suptitle("A larger memory (N = M = 5, Zipf a = 1, random sphere embeddings, 100 GD steps)")
    files = []
    _save(fig, out, "memory", files)
    text.insert(0, "Theory: d ≥ N gives smooth logarithmic margin growth; d < N with large η oscillating "
                   f"margins and loss spikes. Embeddings: particles.random_sphere(fold_in(key({ctx['seed']}), d)).\n")
    return files, text, nums


def _steps(steps, most: int = 6) -> str:
    if not steps:
        return "none"
    shown = ", ".join(str(k) for k in steps[:most])
    return shown + (f", … ({len(steps)})" if len(steps) > most else "")


def fig_transformer(out, ctx):
    import numpy as np

    from particles import transformer

    rep = transformer.reproduce(out, quick=not ctx["full"], progress=ctx["bars"])
    text = [f"particles.transformer.reproduce(quick={not ctx['full']}) in {rep.get('seconds', float('nan')):.1f} s. "
            "Claim: at large η the memory margins oscillate and the loss spikes, yet learning is faster.", "",
            "| run | η | final loss | induction accuracy | loss spikes (steps) | W_O² margin jumps (steps) | "
            "median W_O² margin | first bad step |",
            "|---|---|---|---|---|---|---|---|"]
    agree = []
    for name, r in rep.get("runs", {}).items():
        for res in r.get("results", []):
            bad = res.get("first_bad_step", -1)
            text.append(f"| {name} | {res['lr']:g} | {_fmt(res['final_loss'])} | {_fmt(res['final_induction_accuracy'])} "
                        f"| {_steps(res['spikes'])} | {_steps(res['margin_jumps'])} | {_fmt(res['median_margin_O'])} "
                        f"| {'none' if bad < 0 else bad} |")
        for a in r.get("agreement") or []:
            agree.append((name, a))
    if agree:
        text += ["", "Particle prediction of the W_O² memory (wo2: `particles.gd` on the associative-memory problem "
                 "that W_O² solves, at the same η) against the Transformer:", "",
                 "| run | η | margin correlation | margin MAE | loss MAE | Transformer loss rises matched by a particle rise |",
                 "|---|---|---|---|---|---|"]
        for name, a in agree:
            m = a.get("spikes_matched")
            text.append(f"| {name} | {a['lr']:g} | {_fmt(a['margin_corr'])} | {_fmt(a['margin_mae'])} | "
                        f"{_fmt(a['loss_mae'])} | {'no rises' if m is None else f'{m:.0%}'} |")
    # What matched and what did not, read off the numbers above.
    text.append("")
    for name, r in rep.get("runs", {}).items():
        res = r.get("results", [])
        if len(res) < 2:
            continue
        lo, hi = min(res, key=lambda x: x["lr"]), max(res, key=lambda x: x["lr"])
        faster = hi["final_loss"] < lo["final_loss"]
        text.append(f"- {name}: learning is {'faster' if faster else 'not faster'} at the largest η "
                    f"(final loss {_fmt(hi['final_loss'])} at η = {hi['lr']:g} vs {_fmt(lo['final_loss'])} at "
                    f"η = {lo['lr']:g}): {'matches' if faster else 'does not match'} the paper.")
        spikes, jumps = hi["spikes"], hi["margin_jumps"]
        # A spike "comes with" a margin jump when the memory moved within two steps before it.
        paired = [k for k in spikes if any(0 <= k - j <= 2 for j in jumps)]
        quiet = [r["lr"] for r in res if not r["spikes"]]
        if spikes:
            text.append(f"- {name}: at η = {hi['lr']:g}, {len(spikes)} loss spike(s) (loss > 3× its running median) at "
                        f"step(s) {_steps(spikes)}, {len(paired)} of them right after a jump of the W_O² margins: "
                        "the paper's oscillating margins and loss spikes at large η"
                        + (f"; none at η = {', '.join(f'{x:g}' for x in quiet)}." if quiet else "."))
        else:
            text.append(f"- {name}: no loss spike (loss > 3× its running median) at η = {hi['lr']:g} in this run: "
                        "the paper's spikes at large η are not seen here.")
    corr = [a["margin_corr"] for _, a in agree if np.isfinite(a["margin_corr"])]
    if corr:
        text.append(f"- The particle prediction follows the W_O² margins with correlation {min(corr):.2f}–{max(corr):.2f}, "
                    "best at small η. The particle GD runs on the population loss of a fixed pool of positions: it "
                    "has no minibatch noise, shows no spike, and its loss keeps falling below the Transformer's "
                    "(which is measured on fresh batches).")
    text.append("- Not reproduced: `--train all6` (all six matrices trainable) diverges at η ≥ 5 (loss above 1e5 "
                "within 4 steps, in float32 and in float64; at η = 2 float64 stays finite for 40 steps, float32 not), "
                "so `--train all` trains W_K¹, W_K², W_O² as the authors' code does.")
    text.append("- The outer-product memories of Bietti et al. give 0.45 induction accuracy at d = 64, T = 256 "
                "(0.61 once the two key memories are refined; cross-talk in the residual stream), against > 0.95 at "
                "d = 256, T = 64 (tests/test_transformer.py). In wo2 the trained W_O² reaches the accuracy in the "
                "table above.")
    files = [os.path.basename(f) for f in rep.get("figures", [])]
    return files, text, {k: v for k, v in rep.items() if k != "figures"}


EXPERIMENTS = {
    "landscapes": ("1. Landscapes of two particles", fig_landscapes),
    "spike": ("2. A benign loss spike", fig_spike),
    "time_to_accuracy": ("3. Time to full accuracy", fig_time_to_accuracy),
    "sharpness": ("4. Sharpness along GD", fig_sharpness),
    "forgetting": ("5. Forgetting: cross-entropy misallocates capacity", fig_forgetting),
    "memory": ("6. A larger memory", fig_memory),
    "transformer": ("7. Transformers", fig_transformer),
}


# -------------------------------------------------------------------- main
def main(argv) -> int:
    args = build_parser().parse_args(argv)
    names = list(FIGURES) if args.all else []
    for f in args.figure or []:
        name = NUMBERED.get(f, f)
        _cli.check(name in FIGURES, "--figure", f, f"one of {', '.join(FIGURES)} or 1-7")
        names.append(name)
    _cli.check(args.seed >= 0, "--seed", args.seed, "an integer >= 0")
    clock = _cli.Clock()
    log = _cli.Log(not args.quiet)
    bars = _cli.bars_enabled(args)
    os.makedirs(args.out, exist_ok=True)
    ctx = dict(seed=args.seed, bars=bars, full=args.full)
    import json

    import particles  # noqa: F401  (float64 on)

    state_path = os.path.join(args.out, "report.json")
    state = {}
    if os.path.exists(state_path):
        try:
            with open(state_path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
    with _cli.progress(len(names), "figures", enabled=bars, unit="fig") as bar:
        for name in names:
            title, fn = EXPERIMENTS[name]
            bar.set_description(name)
            t0 = clock()
            files, text, nums = fn(args.out, ctx)
            seconds = clock() - t0
            state[name] = dict(title=title, files=files, text=text, numbers=_cli.jsonable(nums), seconds=seconds)
            log(f"{title}: {', '.join(files)} ({seconds:.1f} s)")
            bar.update(1)
            # After every figure: a later failure keeps the finished sections.
            state["_meta"] = dict(versions=_cli.versions(), seed=args.seed, config=_cli.config_of(args))
            _cli.write_json(state_path, state)
            _cli.write_text(os.path.join(args.out, "REPORT.md"), report(state))
    log(f"wrote {args.out}/REPORT.md; wall time {clock():.1f} s")
    return 0


def report(state) -> str:
    meta = state.get("_meta", {})
    v = meta.get("versions", {})
    lines = ["# Reproduction report", "",
             "Generated by `python scripts/reproduce.py` (experiments of paper-notes §4). Each section lists the "
             "key numbers of a figure beside the theory's predictions.", "",
             f"Versions: particles {v.get('particles')}, jax {v.get('jax')}, numpy {v.get('numpy')}; "
             f"embedding key (--seed) {meta.get('seed')}.", "",
             "**Random embeddings.** The paper's code drew its random embeddings from a stream that cannot be "
             "reproduced; here they are drawn with `particles.random_sphere`-style Gaussian directions "
             "normalised to the sphere, from a fixed JAX key (`--seed`, folded with N or d), so every "
             "number below is reproducible but may differ in detail from the paper's plots.", ""]
    for name in FIGURES:
        if name not in state:
            continue
        s = state[name]
        lines += [f"## {s['title']}", "", "Figures: " + ", ".join(f"[{f}]({f})" for f in s["files"]) +
                  f" ({s['seconds']:.1f} s)", ""]
        if any(f.endswith(".png") for f in s["files"]):
            png = next(f for f in s["files"] if f.endswith(".png"))
            lines += [f"![{name}]({png})", ""]
        lines += s["text"] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    _cli.run_main(main, fast_exit=True)
