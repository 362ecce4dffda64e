"""Sequences from a bigram model with in-context trigger -> output pairs (Bietti et al., 2023).

Each sequence of length T draws K distinct trigger tokens (uniformly among the `pool` most
frequent tokens of the unigram) and, for each, an output token from the unigram. The first
token comes from the unigram; afterwards a trigger is always followed by its sequence's
output and any other token by a draw from its bigram row. Predicting the token after the
second and later occurrences of a trigger needs an induction head: it is the token that
followed the earlier occurrence, which changes from sequence to sequence.

Everything is generated inside JAX from a key, so batches are drawn inside the jitted
training loop.
"""

from __future__ import annotations

import os
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .. import _validate as v


class Batch(eqx.Module):
    """One batch of sequences.

    **Fields:**

    - `tokens`: shape (B, T), ints in [0, N).
    - `triggers`, `outputs`: each sequence's trigger tokens and their outputs, shape (B, K).
    - `induction`: shape (B, T); True at positions t <= T-2 whose token is a trigger seen
      earlier in the sequence (its next token is then the trigger's output, known in context).
    """

    tokens: Int[Array, "B T"]
    triggers: Int[Array, "B K"]
    outputs: Int[Array, "B K"]
    induction: Bool[Array, "B T"]


class BigramData(eqx.Module):
    """The data distribution: unigram, bigram rows and the trigger structure.

    **Fields:**

    - `unigram`: shape (N,), the first token's law, the output tokens' law and the order
      that defines the most frequent tokens.
    - `bigram`: shape (N, N); row i is the law of the token after a non-trigger i.
    - `seq_len` (T), `n_triggers` (K), `pool`: static sizes; triggers are drawn without
      replacement among the `pool` most frequent tokens (K <= pool <= N).
    """

    unigram: Float[Array, " N"]
    bigram: Float[Array, "N N"]
    seq_len: int = eqx.field(static=True, default=256)
    n_triggers: int = eqx.field(static=True, default=3)
    pool: int = eqx.field(static=True, default=10)

    def __check_init__(self):
        N = self.unigram.shape[0]
        v.check_shape("bigram", self.bigram, (N, N))
        v.check_count("seq_len", self.seq_len, 2)
        v.check_count("n_triggers", self.n_triggers, 1)
        if not (self.n_triggers <= self.pool <= N):
            v.fail("pool", self.pool, f"need n_triggers={self.n_triggers} <= pool <= N={N}")

    @property
    def N(self) -> int:
        return self.unigram.shape[0]

    @property
    def frequent(self) -> Int[Array, " pool"]:
        """The `pool` most frequent tokens (ties to the lower index)."""
        return jnp.argsort(-self.unigram, stable=True)[: self.pool]

    def sample(self, key: PRNGKeyArray, batch: int) -> Batch:
        """Draw `batch` sequences (jit-friendly: `batch` is static)."""
        B, T, K, N = batch, self.seq_len, self.n_triggers, self.N
        k_trig, k_out, k_first, k_seq = jax.random.split(key, 4)
        pick = jax.vmap(lambda k: jax.random.choice(k, self.pool, (K,), replace=False))(jax.random.split(k_trig, B))
        triggers = self.frequent[pick]
        log_uni = jnp.log(self.unigram)
        outputs = jax.random.categorical(k_out, log_uni, shape=(B, K))
        # out_map[b, i] = output of trigger i in sequence b, or -1 for a non-trigger.
        rows = jnp.broadcast_to(jnp.arange(B)[:, None], (B, K))
        out_map = jnp.full((B, N), -1, jnp.int32).at[rows, triggers].set(outputs.astype(jnp.int32))
        first = jax.random.categorical(k_first, log_uni, shape=(B,)).astype(jnp.int32)
        log_bi = jnp.log(self.bigram)

        def step(z, k):
            nxt = jax.random.categorical(k, log_bi[z]).astype(jnp.int32)
            forced = jnp.take_along_axis(out_map, z[:, None], axis=1)[:, 0]
            z = jnp.where(forced >= 0, forced, nxt)
            return z, z

        _, rest = jax.lax.scan(step, first, jax.random.split(k_seq, T - 1))
        tokens = jnp.concatenate([first[:, None], rest.T], axis=1)
        return Batch(tokens, triggers, outputs, induction_mask(tokens, out_map))


def induction_mask(tokens: Int[Array, "B T"], out_map: Int[Array, "B N"]) -> Bool[Array, "B T"]:
    T = tokens.shape[1]
    is_trigger = jnp.take_along_axis(out_map, tokens, axis=1) >= 0
    earlier = jnp.tril(jnp.ones((T, T), bool), k=-1)
    same = tokens[:, :, None] == tokens[:, None, :]
    seen = jnp.any(same & earlier[None], axis=2)
    has_target = jnp.broadcast_to(jnp.arange(T)[None, :] < T - 1, tokens.shape)
    return is_trigger & seen & has_target


# ------------------------------------------------------------------ constructors
def synthetic(
    seed: int = 0,
    N: int = 65,
    *,
    zipf_a: float = 1.0,
    support: int = 8,
    seq_len: int = 256,
    n_triggers: int = 3,
    pool: int = 10,
) -> BigramData:
    """Synthetic statistics from a seed (nothing downloaded).

    Unigram: Zipf, p(i) ∝ (i + 1)^(-zipf_a). Bigram row i: `support` distinct tokens drawn
    without replacement with probabilities ∝ unigram, weighted ∝ unigram × Exp(1) noise.
    Built with numpy's `default_rng(seed)` so the same seed gives the same statistics
    everywhere.
    """
    N = v.check_count("N", N, 2)
    support = v.check_count("support", support, 1)
    if support > N:
        v.fail("support", support, f"at most N={N}")
    rng = np.random.default_rng(seed)
    uni = (np.arange(1, N + 1, dtype=np.float64)) ** (-float(zipf_a))
    uni /= uni.sum()
    bigram = np.zeros((N, N))
    for i in range(N):
        cols = rng.choice(N, size=support, replace=False, p=uni)
        w = uni[cols] * rng.exponential(size=support)
        bigram[i, cols] = w / w.sum()
    return BigramData(jnp.asarray(uni, jnp.float32), jnp.asarray(bigram, jnp.float32), seq_len, n_triggers, pool)


def from_text(
    path: str | os.PathLike,
    N: int = 65,
    *,
    seq_len: int = 256,
    n_triggers: int = 3,
    pool: int = 10,
) -> BigramData:
    """Character-level statistics of a text file.

    The N - 1 most frequent characters get their own token (by decreasing frequency);
    every other character maps to the last token. Rows of characters that never precede
    another fall back to the unigram; characters that never occur have unigram 0.
    """
    N = v.check_count("N", N, 2)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as err:
        raise ValueError(f"text={str(path)!r} is not allowed: cannot read it ({err.strerror}).") from None
    if len(text) < 2:
        v.fail("text", str(path), "a text file with at least 2 characters")
    chars, counts = np.unique(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    ids = {int(c): min(r, N - 1) for r, c in enumerate(chars[order])}
    seq = np.array([ids[int(c)] for c in np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)])
    uni = np.bincount(seq, minlength=N).astype(np.float64)
    uni /= uni.sum()
    big = np.zeros((N, N))
    np.add.at(big, (seq[:-1], seq[1:]), 1.0)
    rows = big.sum(1, keepdims=True)
    big = np.where(rows > 0, big / np.maximum(rows, 1), uni[None, :])
    if pool > int(np.sum(uni > 0)):
        v.fail("pool", pool, f"at most the number of distinct tokens in the text ({int(np.sum(uni > 0))})")
    return BigramData(jnp.asarray(uni, jnp.float32), jnp.asarray(big, jnp.float32), seq_len, n_triggers, pool)


def induction_statistics(data: BigramData, key: PRNGKeyArray, n_sequences: int = 2048, batch: int = 256):
    """Monte Carlo statistics of the induction positions.

    **Returns:** `(p, frac)`: p (N,) float64, how often each token is the output to be
    copied at an induction position (normalised); frac, the fraction of predicted
    positions (T - 1 per sequence) that are induction positions.
    """
    sample = eqx.filter_jit(lambda d, k: d.sample(k, batch))
    counts = np.zeros(data.N)
    n_ind = 0
    n = 0
    for i in range(max(1, n_sequences // batch)):
        b = sample(data, jax.random.fold_in(key, i))
        toks = np.asarray(b.tokens)
        ind = np.asarray(b.induction)
        targets = toks[:, 1:][ind[:, :-1]]
        counts += np.bincount(targets, minlength=data.N)
        n_ind += int(ind.sum())
        n += batch * (data.seq_len - 1)
    if n_ind == 0:
        raise ValueError("the data have no induction positions: increase seq_len or n_triggers.")
    return counts / counts.sum(), n_ind / n
