"""Experiment 4: sharpness along GD (paper-notes §4.4).

d = M = 2, f*(x) = x mod 2, Zipf a = 1, random e_x on the circle; N = 3 (γ0 = (−5, −5))
and N = 30 (γ0 = (−5, 5)); 35 steps, η ∈ {10, 1}: the losses, the sharpness landscape and
t ↦ λ_max(∇²L(W_t)). Whether GD settles, and into which cycle, needs the run continued
(3000 steps) and a tight tolerance.
"""

from __future__ import annotations

import jax
import numpy as np
from matplotlib import colors

import particles
from particles import theory

from .. import OKABE_ITO, detect_cycle, gamma_of_scores, plot_losses
from . import Section, circle_problem, figure, fmt

TITLE = "4. Sharpness along GD"
SETUPS = {3: (-5.0, -5.0), 30: (-5.0, 5.0)}
RATES, STEPS, LONG = (10.0, 1.0), 35, 3000
WINDOW = (-8, 8, -8, 8)


def run(ctx) -> Section:
    key = jax.random.key(ctx.seed)
    fig, axs = figure(2, 3, width=13, height=7.6)
    text = ["| N | η | loss at step 35 | λ_max start → end | 2/η | after 3000 steps (tol 1e-9) |",
            "|---|---|---|---|---|---|"]
    nums = {}
    for r, (N, g0) in enumerate(SETUPS.items()):
        problem = circle_problem(jax.random.fold_in(key, N), N, 1.0, g0)
        runs = {lr: particles.gd(problem, lr, STEPS, save_scores=True) for lr in RATES}
        for k, (lr, t) in enumerate(runs.items()):
            plot_losses(axs[r, 0], t, label=f"η={lr:g}", color=OKABE_ITO[k])
        axs[r, 0].set_title(f"N = {N}: losses ({STEPS} GD steps, γ₀ = {g0})")
        _landscape(axs[r, 1], fig, problem, runs, N)
        for k, (lr, t) in enumerate(runs.items()):
            lam = np.asarray(theory.sharpness(problem, t.scores))
            c = OKABE_ITO[k + 1]
            axs[r, 2].plot(np.asarray(t.steps), lam, color=c, lw=1.5, label=f"λ_max along GD, η={lr:g}")
            axs[r, 2].axhline(2 / lr, color=c, ls="--", lw=1.1, label=f"stability limit 2/η = {2 / lr:g}")
            cyc = detect_cycle(particles.gd(problem, lr, LONG), tol=1e-9, tail=64)
            period = None if cyc is None else cyc.period
            end = ("no cycle up to period 8" if period is None else "converged (fixed point)" if period == 1 else
                   f"period-{period} cycle, losses {', '.join(f'{x:.4g}' for x in cyc.loss)}, "
                   f"margin amplitude {cyc.amplitude:.3g}")
            text.append(f"| {N} | {lr:g} | {fmt(t.loss[-1])} | {lam[0]:.4g} → {lam[-1]:.4g} | {2 / lr:.3g} | {end} |")
            nums[f"N{N}_lr{lr:g}"] = dict(final_loss=float(t.loss[-1]), lam=[float(lam[0]), float(lam[-1])],
                                         period=period, cycle_losses=None if cyc is None else cyc.loss.tolist())
        axs[r, 2].set_yscale("log")
        axs[r, 2].set_xlabel("step")
        axs[r, 2].set_ylabel("sharpness λ_max(∇²L)")
        axs[r, 2].legend(loc="lower right")
        axs[r, 2].set_title(f"N = {N}: sharpness along GD")
    fig.suptitle("Sharpness along GD (d = M = 2, Zipf a = 1, random e_x on the circle)")
    text.insert(0, "Paper: N = 30 with η = 10 locks into a period-2 cycle (GD cannot converge where "
                   "η > 2/λ_max at W_CE). Embeddings: Gaussian directions on the circle with key "
                   f"fold_in(key({ctx.seed}), N).\n")
    return Section({"sharpness": fig}, text, nums)


def _landscape(ax, fig, problem, runs, N):
    """The sharpness over the γ-plane, with the GD paths on top."""
    g1, g2 = np.meshgrid(np.linspace(*WINDOW[:2], 60), np.linspace(*WINDOW[2:], 60))
    d = np.stack([g1, g2], -1) @ np.asarray(problem.E).T
    S = np.stack([d / 2, -d / 2], -1).reshape(-1, N, 2)
    lam = np.asarray(theory.two_class_sharpness(problem, S)).reshape(g1.shape)
    levels = np.logspace(np.log10(max(lam.min(), 1e-6)), np.log10(lam.max()), 14)
    cs = ax.contourf(g1, g2, lam, levels=levels, cmap="viridis", norm=colors.LogNorm())
    fig.colorbar(cs, ax=ax, label="λ_max(∇²L)", format="%.2g")
    for k, (lr, t) in enumerate(runs.items()):
        g = gamma_of_scores(problem, t.scores)
        inside = np.all((g >= WINDOW[0]) & (g <= WINDOW[1]), axis=1)
        ax.plot(g[:, 0], g[:, 1], "-o", ms=2.5, lw=1, color=OKABE_ITO[k + 1],
                label=f"GD η={lr:g}" + ("" if inside.all() else " (leaves the window)"))
    ax.set_xlim(*WINDOW[:2])
    ax.set_ylim(*WINDOW[2:])
    ax.set_xlabel("γ₁ (dimensionless)")
    ax.set_ylabel("γ₂ (dimensionless)")
    ax.legend(loc="lower right")
    ax.set_title(f"N = {N}: sharpness landscape")
