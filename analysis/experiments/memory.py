"""Experiment 6: a larger memory (paper-notes §4.6).

N = M = 5, f*(x) = x, Zipf a = 1, sphere embeddings, d ∈ {3, 5, 10}, η ∈ {3, 10, 20}, 100
GD steps: loss curves and the margins of every token. d ≥ N: smooth log growth; d < N with
large η: oscillating margins and loss spikes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import particles

from .. import OKABE_ITO, loss_spikes, oscillations
from . import Section, figure, fmt

TITLE = "6. A larger memory"
DIMS, RATES, STEPS = (3, 5, 10), (3.0, 10.0, 20.0), 100


def run(ctx) -> Section:
    key = jax.random.key(ctx.seed)
    fig, axs = figure(2, 3, width=13, height=7.4)
    text = ["| d | η | final loss | spikes | margin oscillations (per token) | min final margin |",
            "|---|---|---|---|---|---|"]
    nums = {}
    for j, d in enumerate(DIMS):
        problem = particles.random_sphere(jax.random.fold_in(key, d), 5, 5, d, p=particles.zipf(5, 1.0),
                                          targets=np.arange(5))
        batch = particles.gd(problem, jnp.asarray(RATES), STEPS)
        for k, lr in enumerate(RATES):
            t = batch[k]
            axs[0, j].plot(np.asarray(t.steps), np.asarray(t.loss), color=OKABE_ITO[k], label=f"η={lr:g}")
            if k == len(RATES) - 1:
                m = np.asarray(t.margins)
                for x in range(5):
                    axs[1, j].plot(np.asarray(t.steps), m[:, x], color=OKABE_ITO[x], lw=1.2,
                                   label=f"m({x}), p={float(problem.p[x]):.2f}")
            spikes, osc = loss_spikes(t), oscillations(t)
            text.append(f"| {d} | {lr:g} | {fmt(t.loss[-1])} | {len(spikes)} | {list(map(int, osc))} | "
                        f"{fmt(np.min(np.asarray(t.margins)[-1]))} |")
            nums[f"d{d}_lr{lr:g}"] = dict(final_loss=float(t.loss[-1]), spikes=len(spikes), oscillations=osc.tolist())
        axs[0, j].set_yscale("log")
        axs[0, j].set_xlabel("step")
        axs[0, j].set_ylabel("cross-entropy loss (nats)")
        axs[0, j].set_title(f"N = M = 5, d = {d} ({'d ≥ N' if d >= 5 else 'd < N'})")
        axs[0, j].legend()
        axs[1, j].axhline(0, color="0.6", lw=0.6)
        axs[1, j].set_xlabel("step")
        axs[1, j].set_ylabel("margin m(x)")
        axs[1, j].set_title(f"d = {d}: margins of all tokens, η = {RATES[-1]:g}")
        axs[1, j].legend(ncol=2)
    fig.suptitle("A larger memory (N = M = 5, Zipf a = 1, random sphere embeddings, 100 GD steps)")
    text.insert(0, "Theory: d ≥ N gives smooth logarithmic margin growth; d < N with large η oscillating "
                   f"margins and loss spikes. Embeddings: particles.random_sphere(fold_in(key({ctx.seed}), d)). "
                   "Spikes and oscillations are counted beyond float resolution (`particles.events`).\n")
    return Section({"memory": fig}, text, nums)
