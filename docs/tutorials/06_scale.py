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
# # Scale: vocabulary-sized memories, float32 and float64
#
# Two things change when memories get large or runs get long. The N×M score matrix stops
# fitting in memory (at N = M = 50,000 it holds 2.5·10⁹ numbers, 20 GB in float64), so
# `particles.gd_vocab` runs GD on W without ever forming it, sharded over devices. And
# float32 stops resolving GD's late updates, which is why `particles` runs in float64 by
# default.
#
# To show sharding on a laptop, this notebook asks XLA for two CPU devices; set it before
# JAX is imported (on a machine with several GPUs, leave it out).

# %%
# %matplotlib inline
import os

flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=2".strip()

import warnings

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import particles as pt
from particles import theory as th

print(jax.devices())

# %% [markdown]
# ## Why float64: late updates fall below float32 resolution
#
# With orthogonal embeddings the margins grow like log t, and the GD update at step k is of
# size about 1/k: after about 2·10⁶ steps it is below half a float32 ulp of a margin near
# 14.5, and the float32 run stops moving. Four million steps of the two-token orthogonal
# memory (p = (½, ½), η = 1), in both precisions, beside the exact flow margin (Lambert W),
# which GD at η = 1 approaches as k grows:

# %%
problem = pt.orthogonal(np.array([0.5, 0.5]))
steps = 4_000_000
save = pt.log_steps(steps, 40)
run64 = pt.gd(problem, 1.0, steps, save_steps=save)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    problem32 = problem.astype(jnp.float32)
print("warning:", caught[0].category.__name__, "-", caught[0].message)
run32 = pt.gd(problem32, 1.0, steps, save_steps=save)

k = np.asarray(run64.steps)
exact = np.asarray(th.orthogonal_flow_margin(k.astype(np.float64), 0.5, 2))
m64, m32 = np.asarray(run64.margins)[:, 0], np.asarray(run32.margins, np.float64)[:, 0]
for i in (-4, -3, -2, -1):
    print(f"step {k[i]:>9,}: float64 {m64[i]:.5f}   float32 {m32[i]:.5f}   flow theory {exact[i]:.5f}")
print(f"largest |float64 GD - flow theory| over the saved steps: {np.abs(m64 - exact).max():.1e}")
assert m32[-1] == m32[-2] and abs(m64[-1] - exact[-1]) < 1e-4

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogx(k[1:], exact[1:], color="0.6", lw=3, label="flow theory (Lambert W)")
ax.semilogx(k[1:], m64[1:], label="GD, float64")
ax.semilogx(k[1:], m32[1:], "--", label="GD, float32")
ax.set(xlabel="step", ylabel="margin", title="orthogonal memory, p = 1/2, η = 1")
ax.legend()
plt.show()

# %% [markdown]
# Before it stalls, float32 also drifts: each rounding of a small update goes up or down by
# a fraction of an ulp, and over a million steps that adds up (the dashed curve leaves the
# others before it flattens). float32 remains an opt-in speed mode for short runs.
#
# ## `gd_vocab`: the same iterates, without the score matrix
#
# `gd_vocab(E, U, p, targets, lr, steps)` runs W ← W − η Uᵀ (softmax(E Wᵀ Uᵀ) − Y)ᵀ diag(p) E,
# streaming over chunks of inputs (memory O(chunk·M + (N + M)d), not O(NM)); the loss,
# accuracy and margins of each saved step come out of the same pass. On a problem small
# enough for `particles.gd`, the two give the same margins, on one device or with the
# inputs and U's rows split over two:

# %%
rng = np.random.default_rng(0)


def sphere(n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


N, d = 256, 16
E, U = sphere(N, d), sphere(N, d)
p = np.asarray(pt.zipf(N, 1.0))
targets = rng.permutation(N)
scores = pt.gd(pt.Problem.from_embeddings(E, U, p, targets), 5.0, 20)
one = pt.gd_vocab(E, U, p, targets, 5.0, 20, devices=1)
split = pt.gd_vocab(E, U, p, targets, 5.0, 20, devices=2, u_shards=2)
for name, run in (("1 device", one), ("2 devices, U split", split)):
    gap = np.abs(np.asarray(run.margins) - np.asarray(scores.margins)).max()
    print(f"{name:19} max |margin - particles.gd margin| over 20 steps: {gap:.1e}   {run.metadata['devices']} "
          f"device(s), u_shards = {run.metadata['u_shards']}")
    assert gap < 1e-10

# %% [markdown]
# ## A vocabulary-sized memory
#
# N = M = 2048 tokens in d = 32 (far fewer dimensions than tokens: an under-parameterised
# memory), Zipf(1) frequencies, a random permutation as the targets. The inputs' rows are
# sharded over both devices (the default: every device of `jax.devices()`); each step costs
# `vocab_flops(N, M, d)` = 4NMd + 4Nd² FLOPs and one all-reduce of the d×d gradient.

# %%
N, d = 2048, 32
E, U = sphere(N, d), sphere(N, d)
p = np.asarray(pt.zipf(N, 1.0))
targets = rng.permutation(N)
print(f"one step: {pt.vocab_flops(N, N, d) / 1e9:.2f} GFLOP; the N x M scores would hold "
      f"{N * N * 8 / 1e6:.0f} MB in float64 (20 GB at N = M = 50,000)")
big = pt.gd_vocab(E, U, p, targets, 20.0, 40, save_every=5, save_margins=False)
print(big.metadata)
print("loss    :", np.asarray(big.loss).round(4).tolist())
print("accuracy:", np.asarray(big.accuracy).round(4).tolist())

# %% [markdown]
# Mixed precision keeps W and its accumulation in float64 and computes the products and the
# softmax in float32 (`compute_dtype=jnp.float32`): the cost of float32 arithmetic, with the
# gradient of every chunk summed into a float64 W. Over these 40 steps it stays within
# float32 rounding of the float64 run; BENCHMARKS.md measures how much of float32's long-run
# drift it removes.

# %%
mixed = pt.gd_vocab(E, U, p, targets, 20.0, 40, save_every=5, save_margins=False, compute_dtype=jnp.float32)
gap = np.abs(np.asarray(mixed.loss) - np.asarray(big.loss)).max()
print(f"max |loss(mixed) - loss(float64)| over the saved steps: {gap:.1e}")
assert gap < 1e-5

# %% [markdown]
# The same function runs across processes and hosts under `jax.distributed`
# (`particles.distributed.initialize(...)` first; `devices=None` then means every device of
# every process), and a `VocabTrajectory` saves to one `.npz` like every other result
# (`particles.save`, `particles.load`). BENCHMARKS.md has the measured throughput.
