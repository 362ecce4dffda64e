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
# # Your own embeddings
#
# Any associative memory fits the library once you have its embeddings E (N×d) and
# U (M×d), the input frequencies p and the targets f\*(x). This tutorial builds one from
# arrays, runs GD, SGD and the gradient flow on it, checks the score-space reduction against
# descent on W itself, and reads the theory-versus-simulation table.

# %%
# %matplotlib inline
import numpy as np

import particles as pt
import particles.analysis as an
from particles import theory as th

rng = np.random.default_rng(0)
N, M, d = 6, 3, 8  # d >= N: the inputs have full rank (separable)


def sphere(n, d):
    """n Gaussian directions normalised to the unit sphere (the paper's random embeddings)."""
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


E, U = sphere(N, d), sphere(M, d)
p = np.asarray(pt.zipf(N, 1.0))  # p(x) ∝ 1/x
targets = np.arange(N) % M  # f*(x) = x mod M
problem = pt.Problem.from_embeddings(E, U, p, targets)
print("N, M, d =", problem.N, problem.M, problem.d)
print("Gram structure:", problem.structure_E, problem.structure_U)
print("largest |<e_x, e_x'>|, x != x':", np.abs(np.asarray(problem.G_E) - np.eye(N)).max().round(3))
print("regime:", an.describe_regime(problem))

# %% [markdown]
# `from_embeddings` stores G_E = E Eᵀ and G_U = U Uᵀ and picks how a GD step applies them
# (`dense` here; `factored`, through E and U, when d is much smaller than N or M;
# `identity` for orthonormal embeddings). Targets may also be rows of a conditional
# q(y|x) (noisy labels): pass an N×M array instead of integers.
#
# ## The reduction is exact
#
# GD on W with `jax.grad` (`pt.gd_weights`) and GD on the scores (`pt.gd`) are the same
# dynamics. Over 50 steps they agree to rounding error:

# %%
lr = 2.0
on_scores = pt.gd(problem, lr, 50)
on_weights = pt.gd_weights(problem, lr, 50)
gap = np.abs(np.asarray(on_scores.final_scores) - np.asarray(on_weights.final_scores)).max()
print(f"max |S_scores - E W U^T| after 50 steps: {gap:.2e}")
assert gap < 1e-10

# %% [markdown]
# ## GD, SGD and the flow
#
# Margins grow like log t, so we save rows at log-spaced steps (`pt.log_steps`). SGD draws
# `batch_size` inputs x ~ p per step (the integer key seeds it; batches are reproducible);
# its saved rows are population quantities. The flow is solved in log-time.

# %%
steps = 20_000
save = pt.log_steps(steps, 120)
gd = pt.gd(problem, lr, steps, save_steps=save)
sgd = pt.sgd(problem, lr, steps, batch_size=4, key=0, save_steps=save)
flow = pt.flow(problem, lr * steps)
for traj in (gd, sgd, flow):
    print(traj, "\n")

# %% [markdown]
# ## Theory beside the simulation
#
# The problem is separable (d ≥ N): every margin grows like log t, W_t / log t tends to
# the max-margin memory W_mm, and L·ηt → ‖W_mm‖²_F. `compare` computes W_mm
# (`theory.max_margin`) and puts these predictions next to the run.

# %%
print(an.compare(problem, gd))

# %%
mm = th.max_margin(problem)
print(f"|W_mm|_F^2 = {float(mm.norm2):.4f}")

# %% [markdown]
# The comparison is also a table you can keep: `.markdown()` for a report, `.to_json()`
# for a results file.

# %%
table = an.compare(problem, flow)
print(table.markdown())

# %% [markdown]
# ## The figure
#
# GD and SGD at the same step size, and the flow, on the flow's clock (t = η·step). SGD
# follows the full-batch dynamics only on average: its margins are noisy around GD's.

# %%
runs = {"gd": gd, "sgd": sgd, "flow": flow}
lrs = {"gd": lr, "sgd": lr, "flow": None}
fig = an.figure_for_run(problem, an.label_runs(runs, lrs), an.theory_curves(problem, runs, lrs),
                        title="6 random inputs on the sphere, d = 8")
fig

# %% [markdown]
# ## Saving and loading
#
# Every result is one `.npz` with JSON metadata (the integrator's settings, the seed,
# versions); `particles.save` can store the problem beside it.

# %%
import os
import tempfile

path = os.path.join(tempfile.mkdtemp(), "gd.npz")
pt.save(path, gd, problem=problem)
again, problem_again = pt.load(path), pt.load_problem(path)
assert np.array_equal(np.asarray(again.margins), np.asarray(gd.margins))
print(again.metadata["integrator"], again.metadata["lr"], problem_again.N)

# %% [markdown]
# Next: [sweeps and phase diagrams](03_sweeps.py).
