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
# # First steps: two particles and a benign spike
#
# The paper's smallest system: two inputs, two classes, d = 2. Input 1 is frequent
# (p₁ = 0.75), input 2 is rare, and their embeddings are almost aligned: ⟨e₁, e₂⟩ = α =
# 0.95, with different targets. Each score row is a particle; the frequent one drags the
# rare one backwards. We run GD at a small and a large step, put the theory beside it, and
# watch the particles move.
#
# This file is a [jupytext](https://jupytext.readthedocs.io) percent script: run it with
# `python docs/tutorials/01_first_steps.py`, or open it as a notebook in Jupyter.

# %%
# %matplotlib inline
import numpy as np

import particles as pt
import particles.analysis as an
from particles import theory as th

corr, p1 = 0.95, 0.75
problem = pt.two_particles(corr=corr, p1=p1)
print("p   =", np.asarray(problem.p))
print("G_E =", np.asarray(problem.G_E).round(3).tolist())  # input correlations
print("G_U =", np.asarray(problem.G_U).tolist())  # orthonormal outputs

# %% [markdown]
# ## What the theory says before we run
#
# At W = 0 the sharpness (λ_max of the Hessian) is (1 + √((p₁−p₂)² + 4α²p₁p₂))/4: GD is
# locally stable for η < 2/λ_max. The first GD step gives the margins
# m₁ = η(p₁ − α p₂) and m₂ = η(p₂ − α p₁), so the rare token is *forgotten* (its margin
# goes negative) iff α > p₂/p₁, whatever η.

# %%
lam0 = float(th.two_particles_sharpness0(corr, p1))
print(f"sharpness at 0: {lam0:.4f}; stability limit 2/λ_max = {2 / lam0:.3f}")
print("the rare token is forgotten at the first step:", bool(th.two_particles_forgets(corr, p1)))
for lr in (1.0, 10.0):
    print(f"η = {lr:4}: first-step margins", np.asarray(th.two_particles_first_step(lr, corr, p1)).round(4))

# %% [markdown]
# ## Two runs: η = 1 (stable at the start) and η = 10 (beyond 2/λ_max)
#
# `pt.gd` runs full-batch GD in score space, S ← S − η G_E diag(p)(softmax(S) − Y) G_U,
# as one compiled `lax.scan`. Both step sizes go in one call (a vmapped batch); index the
# batch to get each run.

# %%
steps = 35
batch = pt.gd(problem, np.array([1.0, 10.0]), steps, save_scores=True)
small, large = batch[0], batch[1]
print(large)

# %% [markdown]
# The first step is exactly the formula above (the reduction to scores is exact):

# %%
assert np.allclose(large.margins[1], th.two_particles_first_step(10.0, corr, p1), atol=1e-12)
assert np.allclose(small.margins[1], th.two_particles_first_step(1.0, corr, p1), atol=1e-12)
print("margins after step 1, η = 10:", np.asarray(large.margins[1]).round(4))

# %% [markdown]
# The events of the two runs (`particles.analysis` detectors; steps count from 0, the start):

# %%
for name, traj in (("η = 1", small), ("η = 10", large)):
    spikes = an.loss_spikes(traj)
    print(f"{name:7} first full accuracy: {an.first_full_accuracy(traj)}, "
          f"for good from: {an.full_accuracy_from(traj)}, loss spikes: {len(spikes)}, "
          f"final loss {float(traj.loss[-1]):.4f}")

# %% [markdown]
# At η = 10 the loss spikes several times, yet the run is fully right from step 2 on and
# for good from step 15 on, while the stable run at η = 1 has not reached full accuracy
# after 35 steps: the spikes are *benign*, and the large step is faster.

# %%
assert an.first_full_accuracy(small) is None and an.first_full_accuracy(large) is not None
assert len(an.loss_spikes(large)) > 0

# %% [markdown]
# ## Theory beside the simulation
#
# `compare` picks the predictions that apply to the problem (here: the two-particle margin
# map, the first step, forgetting, and the asymptotes m_x ≈ log(2(1−α) η p_x t)) and puts
# them next to the run.

# %%
print(an.compare(problem, large))

# %% [markdown]
# ## The gradient flow, and the standard figure
#
# GD with step η follows the flow at time t = η·k. `label_runs` puts the GD runs on the
# flow's clock, `theory_curves` gives the dashed theory for the margin panels, and
# `figure_for_run` draws the standard figure: margins over log time, losses with the
# spikes marked, and the γ-plane, where γ = Wᵀ(u₁ − u₂) and full accuracy is a wedge of
# opening angle arccos(α).

# %%
flow = pt.flow(problem, 10.0 * steps, save_scores=True)
runs = {"small": small, "large": large, "flow": flow}
lrs = {"small": 1.0, "large": 10.0, "flow": None}
labelled = an.label_runs(runs, lrs)
theory = an.theory_curves(problem, runs, lrs)
fig = an.figure_for_run(problem, labelled, theory, title="two particles, α = 0.95, p₁ = 0.75")
fig

# %% [markdown]
# ## The animation
#
# From the command line, `--animate` writes the same runs as a GIF:
#
# ```bash
# particles-simulate --n 2 --corr 0.95 --p 0.75,0.25 --lr 10,1 --steps 35 --animate spike.gif
# ```
#
# In Python, `particles.analysis.animate` takes the labelled runs (here only the two GD
# runs, 12 log-spaced frames to keep this page light).

# %%
import os
import tempfile

gif = an.animate(problem, {k: v for k, v in labelled.items() if k != "gradient flow"},
                 os.path.join(tempfile.mkdtemp(), "two_particles.gif"), theory=theory, frames=12, fps=4)
print(gif, f"{os.path.getsize(gif) / 1e3:.0f} kB")

# %%
import base64

try:  # in a notebook: show it (a plain `python` run of this file skips the display)
    from IPython import get_ipython
    from IPython.display import HTML, display
except ImportError:
    get_ipython = None
if get_ipython is not None and get_ipython() is not None:
    data = base64.b64encode(open(gif, "rb").read()).decode()
    display(HTML(f'<img src="data:image/gif;base64,{data}" alt="two particles moving in the γ-plane">'))

# %% [markdown]
# Next: [your own embeddings](02_your_embeddings.py).
