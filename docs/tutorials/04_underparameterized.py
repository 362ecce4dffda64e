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
# # An under-parameterised memory
#
# With fewer dimensions than inputs (d < N) the memory cannot store everything. The
# cross-entropy then has a finite minimiser W_CE, GD with a small step converges to it, and
# W_CE does *not* minimise the 0-1 loss: cross-entropy spreads the capacity over rare
# tokens at the expense of frequent ones. This tutorial measures that gap exactly, watches
# SGD forget a good solution, and pushes GD past its stability limit at W_CE into period-2
# (and longer) cycles.
#
# The setting is the paper's experiment 5, smaller: d = M = 2, N = 8 inputs at random
# angles on the circle, f\*(x) = x mod 2, Zipf(1) frequencies, U = I.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np

import particles as pt
import particles.analysis as an
from particles import theory as th

N = 8
rng = np.random.default_rng(5)
angles = rng.uniform(0, 2 * np.pi, N)
E = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # e_x on the unit circle, d = 2
p = np.asarray(pt.zipf(N, 1.0))
targets = np.arange(N) % 2
problem = pt.Problem.from_embeddings(E, np.eye(2), p, targets)
print("regime:", an.describe_regime(problem))

# %% [markdown]
# ## Cross-entropy against the 0-1 loss
#
# `theory.ce_minimizer` finds W_CE by damped Newton (it raises "no finite minimizer:
# separable" when the inputs can all be fitted). `theory.best_zero_one` finds the smallest
# achievable 0-1 loss, exactly for up to 40 inputs: a mixed-integer program (one binary
# "x is right" per input) solved by HiGHS to a proven optimum, its solution re-checked by
# `particles.zero_one`. `top_frequency_scores(problem, r)` stores the r most frequent
# inputs, W\* = Σ_{x ≤ r} u_{f\*(x)} e_xᵀ.

# %%
ce = th.ce_minimizer(problem)
best = th.best_zero_one(problem)
constant = min(p[targets == 0].sum(), p[targets == 1].sum())  # always predict one class
tops = [float(pt.zero_one(th.top_frequency_scores(problem, r), problem.p, problem.Y)) for r in range(N + 1)]
print(f"L01 at the cross-entropy minimiser W_CE : {float(ce.zero_one):.4f} (CE {float(ce.loss):.4f}, "
      f"Newton converged: {bool(ce.exact)})")
print(f"smallest achievable L01                 : {float(best.zero_one):.4f} ({best.method}, "
      f"{best.bound}, status {best.status})")
print(f"store the r most frequent, best r       : {min(tops):.4f} (r = {int(np.argmin(tops))})")
print(f"a constant predictor                    : {constant:.4f}")
print(f"gap L01(W_CE) - min L01 = {float(th.zero_one_gap(problem)):.4f}")
assert best.exact and float(ce.zero_one) > float(best.zero_one)

# %% [markdown]
# Which inputs does each solution get right? (1: right, 0: wrong; inputs sorted by
# frequency.)

# %%
def right(scores):
    return (np.asarray(pt.margins(scores, problem.Y)) > 0).astype(int)


print("p(x)          :", p.round(3).tolist())
print("right at W_CE :", right(ce.scores).tolist())
print("right at best :", right(best.scores).tolist())
assert right(ce.scores)[1] == 0 and right(best.scores)[1] == 1

# %% [markdown]
# W_CE gets the second most frequent input wrong (p = 0.18) and rarer ones right: the
# cross-entropy sacrifices a frequent token to fit rare ones partially, which the 0-1 loss
# pays for.

# %% [markdown]
# ## GD converges to W_CE
#
# Below the stability limit at W_CE, η < 2/λ_max(W_CE), GD from 0 converges to W_CE, and
# `compare` puts the run next to the solvers.

# %%
lam = float(th.sharpness(problem, ce.scores))
print(f"λ_max at W_CE = {lam:.4f}; stability limit 2/λ_max = {2 / lam:.3f}")
gd = pt.gd(problem, 0.5 * 2 / lam, 3000, save_scores=True)
print(an.compare(problem, gd))
assert np.allclose(gd.final_scores, ce.scores, atol=1e-8)

# %% [markdown]
# In the γ-plane (γ = Wᵀ(u₁ − u₂); with two classes only γ matters), W_CE and the best 0-1
# solution point in different directions; GD goes to W_CE.

# %%
fig, ax = plt.subplots(figsize=(5.5, 4.5))
g_ce = an.gamma_of_scores(problem, np.asarray(ce.scores))
g_best = np.asarray(best.W).T @ np.array([1.0, -1.0])
g_best = g_best / np.linalg.norm(g_best) * np.linalg.norm(g_ce) * 2  # a direction: any scale
lim = 1.3 * np.abs(np.concatenate([g_ce, g_best])).max()
path = an.gamma_of_scores(problem, np.asarray(gd.scores))
an.plot_landscape(ax, problem, extent=(-lim, lim, -lim, lim), grid=50, trajectories=[("GD from 0", path)],
                  mark={"W_CE": g_ce, "best 0-1 (direction)": g_best})
plt.show()

# %% [markdown]
# ## SGD forgets
#
# Start at the best 0-1 solution (W₀ along its direction) and run minibatch SGD (batch
# 10, η = 0.1): the 0-1 loss starts at its minimum and rises to L01(W_CE) while the
# cross-entropy goes down to its minimum. The memory forgets a better solution because
# cross-entropy prefers the other one.

# %%
W0 = np.outer([0.5, -0.5], g_best)  # with U = I this gives W0ᵀ(u₁ − u₂) = γ
start = pt.Problem.from_embeddings(E, np.eye(2), p, targets, W0=W0)
sgd = pt.sgd(start, 0.1, 2000, batch_size=10, key=0)
zo = np.asarray(sgd.zero_one)
left = int(np.argmax(zo > float(best.zero_one) + 1e-12))
print(f"L01: {zo[0]:.4f} at the start, above the minimum from step {left}, {zo[-1]:.4f} at the end "
      f"(L01(W_CE) = {float(ce.zero_one):.4f})")
print(f"CE: {float(sgd.loss[0]):.4f} -> {float(sgd.loss[-1]):.4f} (min CE = {float(ce.loss):.4f})")

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(sgd.steps, np.asarray(sgd.loss) / 2, label="L / 2 (cross-entropy)")
ax.plot(sgd.steps, zo, label="L01")
ax.axhline(float(best.zero_one), ls="--", color="0.4", label="min L01")
ax.axhline(float(ce.zero_one), ls=":", color="0.4", label="L01(W_CE)")
ax.set_xlabel("SGD step")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Past the stability limit: cycles
#
# Above 2/λ_max(W_CE) GD cannot converge to W_CE. At 1.2 times the limit it locks into a
# period-2 cycle around it; further up the period doubles, and at twice the limit no short
# period fits. One vmapped call runs the four step sizes; `detect_cycle` reads the tail of
# each run.

# %%
factors = np.array([0.5, 1.2, 1.5, 2.0])
runs = pt.gd(problem, factors * 2 / lam, 3000)
for k, c in enumerate(factors):
    cycle = an.detect_cycle(runs[k])
    what = "no period <= 8" if cycle is None else f"period {cycle.period}, amplitude {cycle.amplitude:.3g}"
    print(f"η = {c:3.1f} × 2/λ_max: {what}; L01 at the end {float(runs[k].zero_one[-1]):.4f}")
assert an.detect_cycle(runs[1]).period == 2

# %% [markdown]
# The experiment at the paper's sizes (N = 3 and N = 30 landscapes, SGD on N = 10) is
# `particles-reproduce --figure forgetting`; see [Reproducing the paper](../reproducing.md).
#
# Next: [from Transformers to particles](05_transformers.py).
