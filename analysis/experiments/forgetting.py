"""Experiment 5: cross-entropy misallocates a memory that is too small (paper-notes §4.5).

d = M = 2, random e_x on the circle: N ∈ {3, 30} landscapes with the CE minimiser marked
and the gap 𝓔 = L01(W_CE) − min L01; then SGD (N = 10, Zipf a = 2, batch 10, η = 0.1, 1000
steps) from a point of best 0-1 loss: it reaches the best 0-1 error, then forgets it while
drifting to W_CE.
"""

from __future__ import annotations

import jax
import numpy as np

import particles
from particles import theory

from .. import OKABE_ITO, gamma_of_scores, plot_landscape
from . import Section, circle_problem, figure

TITLE = "5. Forgetting: cross-entropy misallocates capacity"
DRAWS = 50  # a draw can be separable (no finite W_CE): draw again, at most this many times


def _non_separable(key, N, a, gamma0, offset):
    """The first draw (key fold_in(key, offset + k)) with a finite cross-entropy minimiser."""
    for k in range(DRAWS):
        problem = circle_problem(jax.random.fold_in(key, offset + k), N, a, gamma0)
        try:
            return problem, theory.ce_minimizer(problem), offset + k
        except ValueError as e:
            if "separable" not in str(e):
                raise
    raise ValueError(f"no non-separable draw among {DRAWS} for N={N}")


def _best(best) -> str:
    """The best 0-1 loss as the report states it: exact, or a bound."""
    value = float(best.zero_one)
    return f"{value:.4g}" if best.exact else f"≤ {value:.4g}"


def run(ctx) -> Section:
    key = jax.random.key(ctx.seed)
    fig, axs = figure(1, 3, width=14, height=4.3)
    text = ["| N | L01(W_CE) | min L01 | gap 𝓔 | CE at W_CE | how min L01 was found |", "|---|---|---|---|---|---|"]
    nums = {}
    for j, N in enumerate((3, 30)):
        problem, ce, k = _non_separable(key, N, 1.0, (0.0, 0.0), 1000 * N)
        nums[f"N{N}_key"] = f"fold_in(key({ctx.seed}), {k})"
        best = theory.best_zero_one(problem)
        g_ce = gamma_of_scores(problem, np.asarray(ce.scores))
        ext = (min(-10, g_ce[0] - 2), max(10, g_ce[0] + 2), min(-10, g_ce[1] - 2), max(10, g_ce[1] + 2))
        plot_landscape(axs[0, j], problem, extent=ext, grid=60, mark={"CE minimizer W_CE": g_ce})
        gap = float(ce.zero_one) - float(best.zero_one)
        shown = f"{gap:.3g}" if best.exact else f"≥ {gap:.3g}"
        axs[0, j].set_title(f"N = {N}: landscape; $\\mathcal{{E}}$ = L01(W_CE) − min L01 = {shown}")
        text.append(f"| {N} | {float(ce.zero_one):.4g} | {_best(best)} | {shown} | {float(ce.loss):.4g} | "
                    f"{best.method} |")
        nums[f"N{N}"] = dict(L01_ce=float(ce.zero_one), L01_best=float(best.zero_one), exact=bool(best.exact),
                             gap=gap)
    text += ["", "Embedding keys (separable draws skipped): "
             + ", ".join(f"N = {N}: {nums[f'N{N}_key']}" for N in (3, 30))]
    text += _sgd(axs[0, 2], key, nums)
    return Section({"forgetting": fig}, text, nums)


def _sgd(ax, key, nums) -> list:
    """SGD from a good point reaches the best 0-1 loss, then drifts to W_CE and forgets it."""
    problem, _, k = _non_separable(key, 10, 2.0, (7.5, 2.5), 10_000)
    # The paper starts at γ0 = (7.5, 2.5), a point of best 0-1 loss for its own embeddings.
    # Ours differ: start at the same distance from 0 in the direction of the exact best 0-1
    # solution, where the paper's run started.
    best = theory.best_zero_one(problem)
    g_best = np.asarray(best.W).T @ np.array([1.0, -1.0])
    g_start = g_best / np.linalg.norm(g_best) * np.hypot(7.5, 2.5)
    problem = circle_problem(jax.random.fold_in(key, k), 10, 2.0, tuple(g_start))
    t = particles.sgd(problem, 0.1, 1000, 10, jax.random.fold_in(key, 1))
    ce, best = theory.ce_minimizer(problem), theory.best_zero_one(problem)
    steps, zo = np.asarray(t.steps), np.asarray(t.zero_one)
    ax.plot(steps, np.asarray(t.loss) / 2, color=OKABE_ITO[0], label="L / 2 (cross-entropy, nats)")
    ax.plot(steps, zo, color=OKABE_ITO[1], label="L01 (0-1 loss)")
    ax.axhline(float(best.zero_one), color=OKABE_ITO[2], ls="--", label=f"min L01 = {_best(best)}")
    ax.axhline(float(ce.zero_one), color=OKABE_ITO[3], ls=":", label=f"L01(W_CE) = {float(ce.zero_one):.3g}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"SGD, N = 10, Zipf a = 2, batch 10, η = 0.1, γ₀ = ({g_start[0]:.2f}, {g_start[1]:.2f})")
    ax.legend(loc="center right")
    kmin = int(np.argmin(zo))
    nums["sgd"] = dict(start=float(zo[0]), lowest=float(zo[kmin]), lowest_step=int(steps[kmin]), final=float(zo[-1]))
    return ["", f"SGD (N = 10, Zipf a = 2, batch 10, η = 0.1, 1000 steps, γ₀ = ({g_start[0]:.3g}, {g_start[1]:.3g}), "
            "the best-0-1 direction at the paper's |γ₀| = |(7.5, 2.5)|): 0-1 loss "
            f"{zo[0]:.4g} at start, lowest {zo[kmin]:.4g} at step {int(steps[kmin])} (best achievable "
            f"{_best(best)}), final {zo[-1]:.4g} (W_CE has {float(ce.zero_one):.4g}); final CE "
            f"{float(t.loss[-1]):.4g} vs min CE {float(ce.loss):.4g}."]
