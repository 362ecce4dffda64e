"""Experiment 1: the γ-plane landscapes of two particles (paper-notes §4.1).

p = (0.75, 0.25), α ∈ {−0.5, 0.5, 0.95}: cross-entropy contours over the 0-1 loss on
[−1, 1]² and [−10, 10]², 50 × 50 grids; the opening of the perfect-accuracy wedge against
arccos(α).
"""

from __future__ import annotations

import numpy as np

import particles
from particles import theory

from .. import plot_landscape
from . import Section, figure

TITLE = "1. Landscapes of two particles"
P1, ALPHAS, EXTENTS = 0.75, (-0.5, 0.5, 0.95), ((-1, 1, -1, 1), (-10, 10, -10, 10))


def run(ctx) -> Section:
    fig, axs = figure(2, 3, width=12, height=7.6)
    rows = []
    for j, a in enumerate(ALPHAS):
        problem = particles.two_particles(a, P1)
        for i, ext in enumerate(EXTENTS):
            plot_landscape(axs[i, j], problem, extent=ext, grid=50)
            axs[i, j].set_title(f"α = {a:g}, p = (0.75, 0.25), γ ∈ [{ext[0]}, {ext[1]}]²")
        # The perfect-accuracy directions: γ on the unit circle with both margins > 0.
        th = np.linspace(0, 2 * np.pi, 200_001)[:-1]
        m = np.asarray(theory.two_particles_margins_from_gamma(np.stack([np.cos(th), np.sin(th)], 1), a))
        measured = np.degrees(2 * np.pi * np.mean(np.all(m > 0, axis=1)))
        rows.append((a, float(np.degrees(theory.two_particles_wedge_angle(a))), measured))
    fig.suptitle("Two particles: cross-entropy contours over the 0-1 loss in the γ-plane (50×50 grid)")
    text = ["| α | wedge angle, theory arccos(α) (°) | measured on the circle (°) |", "|---|---|---|"]
    text += [f"| {a:g} | {t:.3f} | {m:.3f} |" for a, t, m in rows]
    return Section({"landscapes": fig}, text, dict(wedge=rows))
