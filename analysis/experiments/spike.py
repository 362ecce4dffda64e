"""Experiment 2: a benign loss spike (paper-notes §4.2).

Two particles, p1 = 0.75, α = 0.95, η ∈ {10, 1}, 35 GD steps: γ-trajectories over the
landscape on [−1, 8] × [−17, 10]; loss and 0-1 loss against t.
"""

from __future__ import annotations

import numpy as np

import particles
from particles import theory

from .. import OKABE_ITO, first_full_accuracy, full_accuracy_from, gamma_of_scores, loss_spikes, plot_landscape
from .. import plot_losses
from . import Section, figure, fmt

TITLE = "2. A benign loss spike"
ALPHA, P1, STEPS, RATES = 0.95, 0.75, 35, (10.0, 1.0)


def run(ctx) -> Section:
    problem = particles.two_particles(ALPHA, P1)
    runs = {lr: particles.gd(problem, lr, STEPS, save_scores=True) for lr in RATES}
    fig, axs = figure(1, 3, width=13, height=4)
    plot_landscape(axs[0, 0], problem, extent=(-1, 8, -17, 10), grid=80,
                   trajectories=[(f"GD η={lr:g}", gamma_of_scores(problem, t.scores)) for lr, t in runs.items()])
    axs[0, 0].set_title("GD paths over the γ-plane (α = 0.95, p₁ = 0.75)")
    for k, (lr, t) in enumerate(runs.items()):
        plot_losses(axs[0, 1 + k], t, color=OKABE_ITO[k])
        axs[0, 1 + k].set_title(f"GD η = {lr:g}: loss and 0-1 loss ({STEPS} steps)")
    lam0 = float(theory.two_particles_sharpness0(ALPHA, P1))
    text = [f"Sharpness at W = 0: λ₀ = {lam0:.4g}, stability limit 2/λ₀ = {2 / lam0:.4g}. "
            f"The rare token is forgotten at the first step iff α > p₂/p₁ = {(1 - P1) / P1:.4g} "
            f"(theory: {bool(theory.two_particles_forgets(ALPHA, P1))}).", "",
            "| η | η·λ₀/2 | first-step margins, theory | simulated | spikes (step: height) | first 100% step "
            "| 100% for good from | final loss |", "|---|---|---|---|---|---|---|---|"]
    nums = {}
    for lr, t in runs.items():
        th1 = np.asarray(theory.two_particles_first_step(lr, ALPHA, P1))
        spikes = loss_spikes(t)
        first, stays = first_full_accuracy(t), full_accuracy_from(t)
        text.append(f"| {lr:g} | {lr * lam0 / 2:.3g} | ({th1[0]:.4g}, {th1[1]:.4g}) | "
                    f"({fmt(t.margins[1, 0])}, {fmt(t.margins[1, 1])}) | "
                    + (", ".join(f"{s.step:g}: +{s.height:.3g}" for s in spikes) or "none")
                    + f" | {'never' if first is None else first} | {'never' if stays is None else stays} "
                      f"| {fmt(t.loss[-1])} |")
        nums[lr] = dict(spikes=[s.to_json() for s in spikes], first_full=first, full_from=stays,
                        final_loss=float(t.loss[-1]))
    return Section({"spike": fig}, text, nums)
