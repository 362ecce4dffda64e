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
# # From Transformers to particles
#
# The paper tests its picture on the two-layer attention-only Transformer of Bietti et al.
# (2023), trained on character bigrams (tiny-shakespeare statistics) with in-context
# triggers: after a trigger token, the next token is a fixed output for that sequence, which
# the model must copy from earlier in the context (an induction head). When only W_O² (the
# output matrix of layer 2) learns, everything else is frozen, and W_O² is exactly a linear
# associative memory: one particle per predicted position. This tutorial builds that memory
# from a batch, checks that one particle GD step *is* one Transformer step, then runs a
# short training with the particle prediction beside it. Shapes are tiny (d = 16,
# sequences of 16 tokens); `particles-reproduce --figure transformer` runs the paper's.

# %%
# %matplotlib inline
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import particles as pt
from particles import transformer as tf

data = tf.DataConfig.paper(k=3, seq_len=16)  # 3 fixed triggers, 16 predicted positions
print("vocabulary N =", data.N, "; triggers:", [data.characters[int(i)] for i in data.triggers])
tokens, counts = tf.sample(data, jax.random.key(0), 8)
row = 0
shown = {"\n": "⏎", " ": "␣"}  # one visible character per token
text = "".join(shown.get(data.characters[int(t)], data.characters[int(t)]) for t in tokens[row])
marks = "".join("^" if c >= 2 else " " for c in np.asarray(counts[row]))
print(text)
print(marks, "  <- tokens whose prediction counts in the loss (a trigger's output, seen before)")

# %% [markdown]
# `counts[b, j] = c` marks token j as the output of a trigger at its c-th occurrence; the
# loss counts where c ≥ 2 (the authors' `loss_head_only`): the output was seen before in
# the sequence, so copying it is possible.
#
# ## The W_O² memory of a batch
#
# At a counted position t, with every matrix but W_O² frozen, the logits are
# b_t + U W_O² v_t, with v_t the layer-2 attention output and b_t the direct path: a linear
# memory with input embeddings v_t, output embeddings the rows of U, and targets the next
# tokens. `pool_arrays` computes (v_t, b_t, target) on a batch and `problem_from_arrays`
# builds the `Problem`: one particle per counted position, plus one massless particle
# (p = 0) per token k whose scores are the W_O² probe u_y · W_O² W_V² e_k.

# %%
config = tf.Config(mode="wo2", d=16, lrs=(2.0,), steps=1, batch=8, data=data, weight_decay=0.0)
p0 = tf.initial_params(config)
V, B, Y = tf.pool_arrays(p0, tokens, counts)
problem = tf.problem_from_arrays(p0, V, B, Y)
n = len(Y)
print(f"{n} counted positions + {data.N} probe particles = N = {problem.N}; M = {problem.M}; d = {problem.d}")

# %% [markdown]
# ## One particle step is one Transformer step
#
# The Transformer's step: the gradient of the head loss (mean cross-entropy over the counted
# positions) with respect to W_O², through the full forward pass. The particles' step:
# `particles.gd` on the memory problem. Both from the same weights, same batch, same η:

# %%
T = data.seq_len
on = np.asarray(counts)[:, 1:] >= 2


def head_loss(WO2):
    logits = tf.forward(p0.replace(WO2=WO2), tokens[:, :T])
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), tokens[:, 1:, None], -1)[..., 0]
    return jnp.sum(jnp.where(on, ce, 0.0)) / jnp.sum(on)


lr = 2.0
p1 = p0.replace(WO2=p0.WO2 - lr * jax.grad(head_loss)(p0.WO2))  # the Transformer, float32
step = pt.gd(problem, lr, 1, save_scores=True)  # the particles, float64
S1 = np.asarray(step.scores[1])
logits = np.asarray(tf.forward(p1, tokens[:, :T]), np.float64)[on]
probe = np.asarray(tf.probe_scores(p1)[0], np.float64)
print(f"max |particle scores - Transformer logits| at the counted positions: {np.abs(S1[:n] - logits).max():.1e}")
print(f"max |particle scores - W_O^2 probe|:                                 {np.abs(S1[n:] - probe).max():.1e}")
assert np.allclose(S1[:n], logits, atol=1e-3) and np.allclose(S1[n:], probe, atol=1e-3)

# %% [markdown]
# The differences are float32 rounding in the Transformer. On fresh batches each SGD step of
# the Transformer is a particle step in expectation; `particles.sgd`, with the batch's
# number of counted positions, adds minibatch noise of the same size.
#
# ## A short run with its particle prediction
#
# `tf.run` trains every step size on the same batches, logs the loss and the W_O² probe
# margins at every step, and predicts them with `particles.gd` and `particles.sgd` on a
# pool of fresh sequences (`sgd=True`, the default, adds the `particles.sgd` prediction; it
# is left out here to save its compilation). Not modelled by the particles: weight decay and
# momentum (both off here), and the correlation of the positions of one sequence.

# %%
config = tf.Config(mode="wo2", d=16, lrs=(2.0, 20.0), steps=25, batch=8, data=data, weight_decay=0.0)
result = tf.run(config, pool=dict(n_sequences=32, n_particles=None), sgd=False)
print(result)
for a in result.agreement():
    print(f"η = {a['lr']:g}: W_O^2 margins, correlation Transformer vs particles {a['margin_corr']:.2f}; "
          f"mean |loss difference| {a['loss_mae']:.2f}")

# %%
fig, axs = plt.subplots(1, 2, figsize=(10, 3.5))
for i, lr in enumerate(result.lrs):
    c = f"C{i}"
    axs[0].plot(result.loss[i], color=c, alpha=0.6, label=f"Transformer, η = {lr:g} (batch loss)")
    axs[0].plot(result.pred_loss[i], color=c, ls="--", label=f"particles.gd, η = {lr:g} (pool loss)")
    axs[1].plot(np.median(result.margins_O[i], axis=1), color=c, alpha=0.6, label=f"Transformer, η = {lr:g}")
    axs[1].plot(np.median(result.pred_margins[i], axis=1), color=c, ls="--", label=f"particles.gd, η = {lr:g}")
axs[0].set(xlabel="step", ylabel="loss (nats)", title="loss")
axs[1].set(xlabel="step", ylabel="median W_O² margin", title="memory margins of the 65 tokens")
axs[0].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# At these tiny sizes and 25 steps the prediction is rough; the paper-sized runs (d = 64,
# 256 positions, batch 512) and their agreement numbers are in
# [Reproducing the paper](../reproducing.md) (experiment 7), made by
# `particles-reproduce --figure transformer`; the [Transformer tool](../cli.md#transformer)
# (`python scripts/transformer.py`) lists the modes (`wo2`, `all`, ...) and the model switches.
#
# Next: [scale](06_scale.py).
