"""The bigram task with in-context triggers of Bietti et al. (2023), sampled inside JAX.

A sequence of T + 1 tokens (T = 256 in the paper): the first token is drawn from the
marginal; afterwards a *trigger* is always followed by its *output* for this sequence, and
any other token by a draw from the bigram conditional of that token. The k triggers are
either fixed (the k most frequent tokens) or drawn per sequence ∝ the marginal without
replacement; each trigger's output is drawn per sequence, uniformly over the vocabulary
(or from the trigger's bigram conditional). Predicting an output at its second and later
occurrences needs an induction head: the output changes from sequence to sequence, and
only an earlier occurrence in the context tells it.

The statistics of the paper's task are the character counts of the tiny-shakespeare text,
shipped in `data/tinyshakespeare_char_stats.json` (see its `provenance` field): nothing is
downloaded.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .. import _validate as v

STATS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tinyshakespeare_char_stats.json")
OUTPUT_LAWS = ("uniform", "bigram", "marginal")


@functools.lru_cache(maxsize=1)
def char_stats() -> dict:
    """The shipped tiny-shakespeare character counts.

    **Returns:** a dict with `characters` (65 strings), `unigram` (65,) and `bigram`
    (65, 65) int64 counts (`bigram[i, j]`: times character j follows character i) and
    `provenance` (where the counts come from).

    >>> s = char_stats()
    >>> len(s["characters"]), int(s["unigram"].sum())
    (65, 1115394)
    """
    with open(STATS_FILE, encoding="utf-8") as f:
        raw = json.load(f)
    return dict(characters=tuple(raw["characters"]), unigram=np.asarray(raw["unigram_counts"], np.int64),
                bigram=np.asarray(raw["bigram_counts"], np.int64), provenance=raw["provenance"])


class DataConfig(eqx.Module):
    """A bigram task with in-context triggers (build it with [`DataConfig.paper`][]).

    **Fields:**

    - `marginal`: (N,) float32, the law of the first token; fixed triggers are the k
      largest entries.
    - `cond`: (N, N) float32; row i is the law of the token after a non-trigger i.
    - `trigger_weights`: (N,) float32; random triggers are drawn ∝ these weights without
      replacement (the marginal in the paper).
    - `triggers`: (k,) int32, the fixed triggers (most frequent first); unused when
      `fixed_triggers` is False.
    - `k`, `fixed_triggers`, `seq_len` (T: a sequence holds T + 1 tokens), `outputs`
      ("uniform": each trigger's output uniform over the N tokens, the paper's default;
      "bigram": drawn from the trigger's conditional; "marginal": from the marginal, the
      pre-#14 synthetic task), `name`: static.
    - `characters`: the token strings, or None.

    >>> cfg = DataConfig.paper(k=3, seq_len=32)
    >>> cfg.N, cfg.k, [cfg.characters[int(i)] for i in cfg.triggers]
    (65, 3, [' ', 'e', 't'])
    """

    marginal: Float[Array, " N"]
    cond: Float[Array, "N N"]
    trigger_weights: Float[Array, " N"]
    triggers: Int[Array, " k"]
    k: int = eqx.field(static=True)
    fixed_triggers: bool = eqx.field(static=True)
    seq_len: int = eqx.field(static=True)
    outputs: str = eqx.field(static=True, default="uniform")
    name: str = eqx.field(static=True, default="custom")
    characters: Optional[tuple] = eqx.field(static=True, default=None)

    def __check_init__(self):
        N = self.marginal.shape[0]
        v.check_shape("cond", self.cond, (N, N))
        v.check_shape("trigger_weights", self.trigger_weights, (N,))
        v.check_shape("triggers", self.triggers, (self.k,))
        if self.outputs not in OUTPUT_LAWS:
            v.fail("outputs", self.outputs, f"use one of {OUTPUT_LAWS}")

    @property
    def N(self) -> int:
        """The vocabulary size."""
        return self.marginal.shape[0]

    @classmethod
    def paper(cls, k: int = 5, fixed_triggers: bool = True, *, seq_len: int = 256,
              bigram_outputs: bool = False) -> "DataConfig":
        """The task of Bietti et al. (2023) on the tiny-shakespeare character counts.

        **Arguments:**

        - `k`: number of triggers (the authors' README uses 5), 1 <= k <= 65.
        - `fixed_triggers`: True: the k most frequent characters in every sequence (the
          authors' `fixed_special_toks=True`); False: k distinct triggers per sequence,
          drawn ∝ the marginal without replacement.
        - `seq_len`: T, the number of predicted positions (sequences hold T + 1 tokens;
          256 in the paper), T >= 2.
        - `bigram_outputs`: draw each trigger's output from its bigram conditional (the
          authors' `bigram_outs`) instead of uniformly over the 65 characters.

        **Returns:** a `DataConfig` with N = 65, marginal and conditionals from the counts.
        """
        s = char_stats()
        return from_counts(s["unigram"], s["bigram"], k=k, fixed_triggers=fixed_triggers, seq_len=seq_len,
                           outputs="bigram" if bigram_outputs else "uniform", name="paper",
                           characters=s["characters"])

    @classmethod
    def synthetic(cls, seed: int = 0, N: int = 65, *, k: int = 3, pool: int = 10, support: int = 8,
                  seq_len: int = 256) -> "DataConfig":
        """The project's task before issue #14 (not the paper's; kept to compare).

        Zipf(1) marginal, bigram rows with `support` random tokens (numpy `default_rng(seed)`),
        k random triggers uniform among the `pool` most frequent tokens, outputs drawn from
        the marginal. Its copied tokens have 2.76 nats of entropy against about 4.0 in the
        paper's task, and many of its sequences lock into one- or two-token loops.

        >>> DataConfig.synthetic(N=12, pool=4, seq_len=16).name
        'synthetic'
        """
        N = v.check_count("N", N, 2)
        support = v.check_count("support", support, 1)
        if support > N:
            v.fail("support", support, f"it must be at most N={N}")
        pool = v.check_count("pool", pool, 1)
        if pool > N:
            v.fail("pool", pool, f"it must be at most N={N}")
        rng = np.random.default_rng(v.check_count("seed", seed, 0))
        uni = np.arange(1, N + 1, dtype=np.float64) ** -1.0
        uni /= uni.sum()
        big = np.zeros((N, N))
        for i in range(N):
            cols = rng.choice(N, size=support, replace=False, p=uni)
            big[i, cols] = uni[cols] * rng.exponential(size=support)
        weights = np.zeros(N)
        weights[:pool] = 1.0  # Zipf: the first tokens are the most frequent
        return from_counts(uni, big, k=k, fixed_triggers=False, seq_len=seq_len, outputs="marginal",
                           trigger_weights=weights, name="synthetic")

    def describe(self) -> str:
        """One line: the setting, for figure titles and reports."""
        trig = (f"k={self.k} fixed triggers" if self.fixed_triggers else f"k={self.k} random triggers ∝ marginal"
                if self.name == "paper" else f"k={self.k} random triggers")
        return f"{self.name} data (N={self.N}, T={self.seq_len}, {trig}, {self.outputs} outputs)"

    def to_dict(self) -> dict:
        """The JSON-able description of the configuration (the arrays are not included)."""
        return dict(name=self.name, N=self.N, k=self.k, fixed_triggers=self.fixed_triggers, seq_len=self.seq_len,
                    outputs=self.outputs, triggers=[int(t) for t in np.asarray(self.triggers)])


def from_counts(unigram, bigram, *, k: int, fixed_triggers: bool, seq_len: int, outputs: str = "uniform",
                trigger_weights=None, name: str = "custom", characters=None) -> DataConfig:
    """A `DataConfig` from unigram (N,) and bigram (N, N) counts or frequencies.

    Rows of `bigram` that sum to 0 fall back to the marginal. Errors name the argument.

    >>> from_counts([3, 1], [[1, 2], [1, 0]], k=1, fixed_triggers=True, seq_len=4).triggers.tolist()
    [0]
    """
    uni = np.asarray(unigram, np.float64)
    big = np.asarray(bigram, np.float64)
    if uni.ndim != 1 or uni.size < 2:
        raise ValueError(f"unigram has shape {uni.shape}; expected a vector (N,) with N >= 2.")
    N = uni.size
    v.check_shape("bigram", big, (N, N))
    if not (np.all(np.isfinite(uni)) and np.all(uni >= 0) and uni.sum() > 0):
        v.fail("unigram", uni, "finite counts >= 0, not all 0")
    if not (np.all(np.isfinite(big)) and np.all(big >= 0)):
        v.fail("bigram", big, "finite counts >= 0")
    k = v.check_count("k", k, 1)
    if k > N:
        v.fail("k", k, f"it must be at most the vocabulary size N={N}")
    seq_len = v.check_count("seq_len", seq_len, 2)
    if not isinstance(fixed_triggers, (bool, np.bool_)):
        v.fail("fixed_triggers", fixed_triggers, "True or False")
    if outputs not in OUTPUT_LAWS:
        v.fail("outputs", outputs, f"use one of {OUTPUT_LAWS}")
    marginal = uni / uni.sum()
    rows = big.sum(1, keepdims=True)
    cond = np.where(rows > 0, big / np.where(rows > 0, rows, 1.0), marginal[None, :])
    weights = marginal if trigger_weights is None else np.asarray(trigger_weights, np.float64)
    v.check_shape("trigger_weights", weights, (N,))
    if not fixed_triggers and int(np.sum(weights > 0)) < k:
        v.fail("k", k, f"random triggers need k <= {int(np.sum(weights > 0))} tokens of positive weight")
    # Most frequent first; ties to the lower index (the authors' argsort order only matters for ties).
    fixed = np.argsort(-marginal, kind="stable")[:k]
    return DataConfig(jnp.asarray(marginal, jnp.float32), jnp.asarray(cond, jnp.float32),
                      jnp.asarray(weights / weights.sum(), jnp.float32), jnp.asarray(fixed, jnp.int32),
                      k, bool(fixed_triggers), seq_len, outputs, name,
                      None if characters is None else tuple(characters))


def _log(p):
    # log 0 = -inf is never drawn by `categorical` (a Gumbel argmax).
    return jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), -jnp.inf)


def sample(config: DataConfig, key: PRNGKeyArray, batch_size: int):
    """Draw `batch_size` sequences and their output counters.

    **Arguments:** the [`DataConfig`][], a JAX key, `batch_size` >= 1 (static under jit).

    **Returns:** `(tokens, counts)`, both int32 of shape (B, T + 1). `counts[b, j]` is 0
    unless token j of sequence b was emitted as a trigger's output (token j − 1 is a
    trigger), and then c when it is that trigger's c-th occurrence in the sequence. The
    loss of predicting token j from position j − 1 counts when `counts[:, j] >= 2` (the
    authors' `loss_head_only`).

    >>> tokens, counts = sample(DataConfig.paper(seq_len=8), jax.random.key(0), 2)
    >>> tokens.shape, counts.shape, int(counts[:, 0].max())
    ((2, 9), (2, 9), 0)
    """
    if v.is_concrete(batch_size):
        batch_size = v.check_count("batch_size", batch_size, 1)
    B, N, k, T = batch_size, config.N, config.k, config.seq_len
    k_trig, k_out, k_first, k_seq = jax.random.split(key, 4)
    if config.fixed_triggers:
        trig = jnp.broadcast_to(config.triggers, (B, k))
    else:
        # Gumbel top-k = successive draws ∝ weights without replacement (numpy's choice).
        g = _log(config.trigger_weights)[None, :] + jax.random.gumbel(k_trig, (B, N), jnp.float32)
        trig = jax.lax.top_k(g, k)[1].astype(jnp.int32)
    if config.outputs == "uniform":
        outs = jax.random.randint(k_out, (B, k), 0, N, jnp.int32)
    elif config.outputs == "bigram":
        outs = jax.random.categorical(k_out, _log(config.cond)[trig]).astype(jnp.int32)
    else:
        outs = jax.random.categorical(k_out, _log(config.marginal), shape=(B, k)).astype(jnp.int32)
    rows = jnp.broadcast_to(jnp.arange(B)[:, None], (B, k))
    slot_of = jnp.full((B, N), -1, jnp.int32).at[rows, trig].set(jnp.arange(k, dtype=jnp.int32)[None, :])
    first = jax.random.categorical(k_first, _log(config.marginal), shape=(B,)).astype(jnp.int32)
    log_cond = _log(config.cond)
    batch = jnp.arange(B)

    def step(carry, key_t):
        z, seen = carry
        slot = slot_of[batch, z]
        hit = slot >= 0
        s = jnp.maximum(slot, 0)
        nxt = jnp.where(hit, outs[batch, s], jax.random.categorical(key_t, log_cond[z]).astype(jnp.int32))
        seen = seen.at[batch, s].add(hit.astype(jnp.int32))
        return (nxt, seen), (nxt, jnp.where(hit, seen[batch, s], 0))

    _, (rest, cnt) = jax.lax.scan(step, (first, jnp.zeros((B, k), jnp.int32)), jax.random.split(k_seq, T))
    tokens = jnp.concatenate([first[:, None], rest.T], axis=1)
    counts = jnp.concatenate([jnp.zeros((B, 1), jnp.int32), cnt.T], axis=1)
    return tokens, counts


_sample_jit = eqx.filter_jit(sample)


def statistics(config: DataConfig, key: PRNGKeyArray, n_sequences: int = 2048, batch_size: int = 256) -> dict:
    """Monte Carlo statistics of the counted positions (`counts >= 2`).

    **Returns:** a dict of floats: `share` (counted positions / T), `per_sequence`
    (mean number of counted positions), `entropy` (nats, of the token to be copied at a
    counted position), `copied` ((N,) numpy, its law), `n_sequences`.

    >>> st = statistics(DataConfig.paper(seq_len=16), jax.random.key(0), 64, 64)
    >>> 0 < st["share"] < 1
    True
    """
    n_sequences = v.check_count("n_sequences", n_sequences, 1)
    batch_size = min(v.check_count("batch_size", batch_size, 1), n_sequences)
    hist = np.zeros(config.N)
    n_pos = 0
    n_seq = 0
    i = 0
    while n_seq < n_sequences:
        tokens, counts = (np.asarray(a) for a in _sample_jit(config, jax.random.fold_in(key, i), batch_size))
        on = counts >= 2
        hist += np.bincount(tokens[on], minlength=config.N)
        n_pos += int(on.sum())
        n_seq += batch_size
        i += 1
    q = hist / max(hist.sum(), 1)
    nz = q[q > 0]
    return dict(share=n_pos / (n_seq * config.seq_len), per_sequence=n_pos / n_seq,
                entropy=float(-(nz * np.log(nz)).sum()), copied=q, n_sequences=n_seq)
