"""Experiment 3: time to full accuracy over the paper's grid (paper-notes §4.3).

Two particles, p1 = sigmoid(logspace(−0.5, 0.5, 10)), α = linspace(0.5, 1, 10),
η = logspace(−1, 1, 10), 1000 GD steps per cell: the first step with 100% accuracy, as
contours over (α, η) and (log(p1/p2), η). One call of `particles.sweep` (the margin-map
kernel: the grid asks only for the first step of full accuracy).
"""

from __future__ import annotations

import numpy as np

import particles
from particles import theory

from . import Section, figure

TITLE = "3. Time to full accuracy"
STEPS = 1000


def run(ctx) -> Section:
    from matplotlib import colors

    log_odds = np.logspace(-0.5, 0.5, 10)  # p1 = sigmoid(logspace(-0.5, 0.5, 10)) as in the paper
    axes = {"lr": np.logspace(-1, 1, 10), "corr": np.linspace(0.5, 1, 10), "log_odds": log_odds}
    res = particles.sweep("two_particles", axes, STEPS, metrics=["first_full_accuracy"], progress=ctx.progress)
    T = res.outputs["first_full_accuracy"].astype(float)
    fig, axs = figure(1, 2, width=11, height=4.2)
    for ax, (name, xs, Z, fixed) in zip(axs[0], (
            ("input correlation α", axes["corr"], T[:, :, 4], f"log(p₁/p₂) = {log_odds[4]:.3g}"),
            ("log-odds log(p₁/p₂)", log_odds, T[:, 4, :], f"α = {axes['corr'][4]:.3g}"))):
        X, Y = np.meshgrid(xs, axes["lr"])
        cs = ax.contourf(X, Y, np.ma.masked_less(Z, 0), levels=np.logspace(0, 3, 13), norm=colors.LogNorm(),
                         cmap="viridis")
        never = Z < 0
        if never.any():
            ax.scatter(X[never], Y[never], marker="x", color="0.3", s=18, label=f"never within {STEPS} steps")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), frameon=False)
        ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("learning rate η")
        ax.set_title(f"first step of 100% accuracy ({fixed})")
        fig.colorbar(cs, ax=ax, label="steps (log scale)")
    # Theory: one step gives full accuracy iff the rare token is not forgotten at step 1.
    lr_g, c_g, lo_g = np.meshgrid(axes["lr"], axes["corr"], log_odds, indexing="ij")
    forgets = np.asarray(theory.two_particles_forgets(c_g, 1 / (1 + np.exp(-lo_g))))
    one = T == 1
    text = [f"Grid: η = logspace(−1, 1, 10), α = linspace(0.5, 1, 10), log(p₁/p₂) = logspace(−0.5, 0.5, 10); "
            f"{STEPS} GD steps per cell, {T.size} cells in one call of `particles.sweep` (margin-map kernel).",
            f"- cells never reaching 100% within {STEPS} steps: {int(np.sum(T < 0))}, of which "
            f"{int(np.sum(T[:, -1, :] < 0))} at α = 1 (distinct targets with identical inputs are unlearnable)",
            f"- theory: one step from W = 0 gives 100% iff no token is forgotten at step 1: "
            f"{int((~forgets).sum())} cells satisfy it, {int(one[~forgets].sum())} of them are perfect at step 1; "
            f"cells where a token is forgotten first and still perfect at step 1: {int(one[forgets].sum())}",
            "", f"Steps to 100% accuracy at log(p₁/p₂) = {log_odds[4]:.3g} (rows η, columns α):", "",
            "| η \\ α | " + " | ".join(f"{c:.3g}" for c in axes["corr"]) + " |",
            "|---" * (len(axes["corr"]) + 1) + "|"]
    for i, lr in enumerate(axes["lr"]):
        text.append(f"| {lr:.3g} | " + " | ".join("never" if x < 0 else f"{int(x)}" for x in T[i, :, 4]) + " |")
    return Section({"time_to_accuracy": fig}, text, dict(grid=T.tolist()))
