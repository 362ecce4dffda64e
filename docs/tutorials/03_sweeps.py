# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Sweeps and phase diagrams
#
# `particles.sweep` runs GD (or SGD) at every point of a grid, as one compiled, vmapped
# call per chunk, and records the events of each run (`particles.METRICS`): the first step
# of full accuracy, loss increases and spikes, the final loss and margins.
# `particles.analysis.phase_diagrams` draws one figure per pair of swept axes. This
# tutorial redoes the paper's time-to-accuracy experiment on a small grid, puts a theory
# curve on it, then sweeps other families, your own family, and SGD seeds.

# %%
# %matplotlib inline
import numpy as np

import particles as pt
import particles.analysis as an
from particles import theory as th

for name, family in pt.FAMILIES.items():
    print(f"{name:15} {family.doc}")

# %% [markdown]
# ## Two particles over (α, η)
#
# The paper's experiment 3 sweeps p₁, α and η with 1000 GD steps per cell; here a 12 × 12
# grid over α ∈ [0.5, 0.99] and η ∈ [0.1, 10] at p₁ = 0.75, 500 steps per cell.

# %%
lrs = np.logspace(-1, 1, 12)
corrs = np.linspace(0.5, 0.99, 12)
result = pt.sweep("two_particles", {"lr": lrs, "corr": corrs, "p1": [0.75]}, 500)
print(result)
first = result.outputs["first_full_accuracy"][:, :, 0]  # rows: lr; columns: corr; -1: never
print("first step of full accuracy at α = 0.5, from the smallest η to the largest:", first[:, 0].tolist())

# %% [markdown]
# Larger steps reach full accuracy sooner in every column. Where does the loss first go
# *up*? From W = 0 the first step raises the loss above log 2 exactly when η exceeds
# `theory.two_particles_spike_lr(α, p₁)` (a root of a convex function of η, found by
# bisection; it is not 2/λ_max). On this grid it predicts every cell that sees a loss
# increase:

# %%
lr_star = np.asarray(th.two_particles_spike_lr(corrs, 0.75))
predicted = lrs[:, None] > lr_star[None, :]
observed = result.outputs["loss_increases"][:, :, 0] > 0
print(f"cells with a loss increase: {observed.sum()}; predicted: {predicted.sum()}; "
      f"agreement: {np.mean(predicted == observed):.0%}")
assert np.array_equal(predicted, observed)

# %% [markdown]
# The phase diagrams, with η* (solid) and the stability limit at the start 2/λ_max(0)
# (dashed) drawn over them. The loss can rise only to the right of η*, well above
# 2/λ_max: a step beyond the stability limit does not by itself make the loss go up.

# %%
figures = an.phase_diagrams(result)
fig = figures["phase-corr-lr"]
limit = 2 / np.asarray(th.two_particles_sharpness0(corrs, 0.75))
panels = [ax for ax in fig.axes if ax.get_ylabel()]  # the metric panels (colour bars have no y label)
for ax in panels[:3]:
    ax.plot(corrs, lr_star, color="white", lw=1.5)
    ax.plot(corrs, limit, color="white", lw=1.2, ls="--")
    ax.set_ylim(lrs[0], lrs[-1])
fig

# %% [markdown]
# The same sweep from the command line writes `sweep.npz`, `sweep.json` and the PNGs:
#
# ```bash
# particles-sweep --geometry two_particles --corr linspace:0.5:0.99:12 --lr logspace:-1:1:12 \
#     --p1 0.75 --steps 500 --out sweeps/corr-lr
# ```
#
# ## Other families and shapes
#
# The `equicorrelated` family has n inputs with pairwise correlation α; frequencies follow
# one law among `p1`, `log_odds` and `zipf`. Shape axes (`n`, `m`, `d`) compile once per
# value; value axes are traced. Here: how the Zipf exponent slows the rarest token down.

# %%
zipf = pt.sweep("equicorrelated", {"lr": [1.0, 4.0], "n": [3, 6], "corr": [0.5], "zipf": [0.0, 1.0, 2.0]},
                400, metrics=["first_full_accuracy", "final_min_margin"])
print(zipf)
for i, lr in enumerate(zipf.axes["lr"]):
    for j, n in enumerate(zipf.axes["n"]):
        steps = zipf.outputs["first_full_accuracy"][i, j, 0].tolist()
        print(f"η = {lr:g}, n = {n:g}: first full accuracy for Zipf a = 0, 1, 2: {steps}")

# %% [markdown]
# ## Your own family
#
# Any function of the value axes that returns a `Problem` is a family (it is traced under
# `vmap`, so build the problem with jax.numpy-friendly code). A parameter named `key`
# receives a PRNG key derived from the `seed` axis.

# %%
import jax


def noisy_orthogonal(noise, key):
    """4 orthonormal inputs plus Gaussian noise of size `noise`, renormalised; U = I."""
    E = jax.numpy.eye(4) + noise * jax.random.normal(key, (4, 4))
    E = E / jax.numpy.linalg.norm(E, axis=1, keepdims=True)
    return pt.Problem.from_embeddings(E, jax.numpy.eye(4), pt.zipf(4, 1.0), jax.numpy.arange(4))


mine = pt.sweep(noisy_orthogonal, {"lr": [2.0], "noise": [0.0, 0.3, 0.6], "seed": [0, 1, 2, 3]}, 300,
                metrics=["first_full_accuracy", "final_loss"])
print(mine)
print("final loss, rows: noise, columns: seed\n", mine.outputs["final_loss"][0].round(4))

# %% [markdown]
# ## SGD: seeds as an axis
#
# With `batch_size`, each cell runs minibatch SGD; the `seed` axis draws independent
# batches, so statistics over seeds are a reduction over that axis.

# %%
noisy = pt.sweep("equicorrelated", {"lr": [1.0, 4.0], "corr": [0.5], "seed": list(range(6))}, 300,
                 batch_size=2, metrics=["first_full_accuracy", "loss_spikes", "final_loss"])
loss = noisy.outputs["final_loss"][:, 0, :]
for i, lr in enumerate(noisy.axes["lr"]):
    print(f"η = {lr:g}: final loss over 6 seeds {loss[i].mean():.4f} ± {loss[i].std():.4f}")

# %% [markdown]
# Long sweeps take `checkpoint="partial.npz"` (and `resume=True` after an interrupt),
# and run across processes and hosts with `particles.distributed`
# (`particles-sweep --coordinator HOST:PORT --num-processes P --process-id I`). A finished
# sweep saves to one file: `result.save(path)`, read back with `particles.load(path)`.
#
# Next: [an under-parameterised memory](04_underparameterized.py).
