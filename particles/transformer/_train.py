"""Training the Transformer with SGD (no momentum), every learning rate in one vmapped scan."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate as v
from .._progress import progress_bar
from . import _data, _model

MODES = ("wo2", "all", "all6")
# What SGD moves in each mode. "all": the trainable set of the authors' simplified model
# (`ihead_basic_model.py`: W_V^1, W_O^1, W_V^2 stay at their random init); "all6": all six.
TRAINABLE = dict(all=("WK1", "WK2", "WO2"), all6=("WK1", "WV1", "WO1", "WK2", "WV2", "WO2"))
OBJECTIVES = ("induction", "all")


@dataclasses.dataclass(frozen=True)
class Config:
    """One experiment. Validated on construction (ValueError naming the field).

    - `train`: "wo2" (only W_O^2 learns; the other matrices are the ideal memories of
      [`ideal_weights`][], refined, W_O^2 starts at 0), "all" (the authors' trainable set
      W_K^1, W_K^2, W_O^2 learns from torch-like init; W_V^1, W_O^1, W_V^2 stay random) or
      "all6" (all six matrices learn; diverges within 4 steps at eta >= 5).
    - `d`: embedding dimension; `lrs`: the SGD step sizes, run side by side on the same
      batches; `steps`; `batch` (sequences per step); `seq_len` (T); `seed`.
    - `N` (vocabulary), `n_triggers` (K), `pool`, `text` (a text file for character-level
      statistics, else synthetic ones from `seed`).
    - `beta1`, `beta2`: scales of the ideal layer-1 and layer-2 key memories;
      `refine_steps`: Adam steps that refine each key memory W_K^1, W_K^2 on its own
      attention objective (0: the closed forms; see `refine_previous_token` and
      `refine_induction_head`). wo2 only.
    - `objective`: "induction" (default, the authors' `loss_head_only=True`): the mean
      cross-entropy over the induction positions of the batch (a trigger's second and later
      occurrences); "all": the mean over all B (T - 1) predicted positions.
    """

    train: str = "wo2"
    d: int = 64
    lrs: tuple = (20.0, 50.0, 100.0, 200.0)
    steps: int = 1000
    batch: int = 16
    seq_len: int = 256
    seed: int = 0
    N: int = 65
    n_triggers: int = 3
    pool: int = 10
    text: Optional[str] = None
    beta1: float = 20.0
    beta2: float = 20.0
    refine_steps: int = 500
    objective: str = "induction"

    def __post_init__(self):
        if self.train not in MODES:
            v.fail("train", self.train, f"use one of {MODES}")
        if self.objective not in OBJECTIVES:
            v.fail("objective", self.objective, f"use one of {OBJECTIVES}")
        v.check_count("d", self.d, 1)
        v.check_count("steps", self.steps, 1)
        v.check_count("batch", self.batch, 1)
        v.check_count("seq_len", self.seq_len, 2)
        v.check_count("seed", self.seed, 0)
        v.check_count("N", self.N, 2)
        v.check_count("n_triggers", self.n_triggers, 1)
        v.check_count("refine_steps", self.refine_steps, 0)
        if not (self.n_triggers <= self.pool <= self.N):
            v.fail("pool", self.pool, f"need n_triggers={self.n_triggers} <= pool <= N={self.N}")
        lrs = np.asarray(self.lrs, dtype=np.float64)
        if lrs.ndim != 1 or lrs.size == 0:
            v.fail("lr", self.lrs, "a non-empty list of step sizes")
        v.check_positive("lr", lrs)
        v.check_positive("beta1", self.beta1)
        v.check_positive("beta2", self.beta2)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["lrs"] = [float(x) for x in self.lrs]
        return out


class Setup(eqx.Module):
    """What a run starts from: data law, frozen embeddings, initial weights, induction stats."""

    data: _data.BigramData
    emb: _model.Embeddings
    w0: _model.Weights
    p: jax.Array  # (N,) float64: law of the copied token at induction positions
    frac: float = eqx.field(static=True)  # fraction of predicted positions that are induction ones


def setup(config: Config, *, n_stat_sequences: int = 1024) -> Setup:
    key = jax.random.key(config.seed)
    k_emb, k_remap, k_init, k_stat, k_refine = jax.random.split(key, 5)
    if config.text is not None:
        data = _data.from_text(config.text, config.N, seq_len=config.seq_len, n_triggers=config.n_triggers,
                               pool=config.pool)
    else:
        data = _data.synthetic(config.seed, config.N, seq_len=config.seq_len, n_triggers=config.n_triggers,
                               pool=config.pool)
    emb = _model.embeddings(k_emb, config.N, config.seq_len, config.d)
    if config.train == "wo2":
        w0 = _model.ideal_weights(emb, k_remap, config.beta1, config.beta2, 0.0)
        if config.refine_steps:
            k1, k2 = jax.random.split(k_refine)
            w0 = eqx.filter_jit(_model.refine_previous_token)(w0, emb, data, k1, config.refine_steps, 8, 0.2)
            w0 = eqx.filter_jit(_model.refine_induction_head)(w0, emb, data, k2, config.refine_steps, 8, 0.1)
    else:
        w0 = _model.random_weights(k_init, config.d)
    p, frac = _data.induction_statistics(data, k_stat, n_stat_sequences, min(256, n_stat_sequences))
    return Setup(data, emb, w0, jnp.asarray(p, jnp.float64), float(frac))


def _step_fn(train: str, objective: str, data, emb, p_mem, batch: int, data_key):
    """One SGD step for one learning rate, returning the logged row."""
    N = emb.E.shape[0]
    ident = jnp.eye(N, dtype=_model.DTYPE)
    p_mem = p_mem.astype(_model.DTYPE)

    def losses(w, tokens, induction):
        return from_logits(_model.forward(w, emb, tokens)[:, :-1], tokens, induction)

    def from_logits(logits, tokens, induction):
        logp = jax.nn.log_softmax(logits, axis=-1)
        ce = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
        ind = induction[:, :-1]
        n_ind = jnp.maximum(jnp.sum(ind), 1)
        hit = jnp.argmax(logits, axis=-1) == tokens[:, 1:]
        ind_loss = jnp.sum(jnp.where(ind, ce, 0.0)) / n_ind
        aux = dict(
            induction_loss=ind_loss,
            all_loss=jnp.mean(ce),
            induction_accuracy=jnp.sum(ind & hit) / n_ind,
        )
        return (ind_loss if objective == "induction" else jnp.mean(ce)), aux

    def probes(w):
        S_O, S_K = _model.probe_scores(w, emb)
        ce = -jnp.sum(ident * jax.nn.log_softmax(S_O, axis=-1), axis=-1)
        return dict(margins_O=_model.probe_margins(S_O), margins_K=_model.probe_margins(S_K), probe_loss=ce @ p_mem)

    def step(w, lr, k, b):
        names = TRAINABLE[train]
        where = lambda m: [getattr(m, n) for n in names]
        sub = {n: getattr(w, n) for n in names}
        f = lambda sub: losses(eqx.tree_at(where, w, [sub[n] for n in names]), b.tokens, b.induction)
        (loss, aux), g = jax.value_and_grad(f, has_aux=True)(sub)
        new = eqx.tree_at(where, w, [sub[n] - lr * g[n] for n in names])
        return new, dict(loss=loss, **aux, **probes(w))

    def losses_wo2(WO2, v, off, tokens, induction):
        logits = (off + v @ WO2.T @ emb.U.T)[:, :-1]
        return from_logits(logits, tokens, induction)

    def step_wo2(w, lr, v, off, b):
        (loss, aux), g = jax.value_and_grad(losses_wo2, has_aux=True)(w.WO2, v, off, b.tokens, b.induction)
        return eqx.tree_at(lambda m: m.WO2, w, w.WO2 - lr * g), dict(loss=loss, **aux, **probes(w))

    def all_lrs(ws, lrs, k):
        b = data.sample(jax.random.fold_in(data_key, k), batch)
        if train == "wo2":
            # The frozen layers are the same for every step size: run them once per batch.
            v, off = _model.layer2_inputs(jax.tree_util.tree_map(lambda a: a[0], ws), emb, b.tokens)
            return jax.vmap(step_wo2, in_axes=(0, 0, None, None, None))(ws, lrs, v, off, b)
        return jax.vmap(step, in_axes=(0, 0, None, None))(ws, lrs, k, b)

    return all_lrs, probes


@eqx.filter_jit
def _chunk(ws, lrs, start, setup_: Setup, train: str, objective: str, batch: int, data_key, n: int):
    all_lrs, _ = _step_fn(train, objective, setup_.data, setup_.emb, setup_.p, batch, data_key)

    def body(ws, k):
        ws, row = all_lrs(ws, lrs, k)
        return ws, row

    return jax.lax.scan(body, ws, start + jnp.arange(n))


@eqx.filter_jit
def _final_probes(ws, setup_: Setup):
    _, probes = _step_fn("all", "all", setup_.data, setup_.emb, setup_.p, 1, jax.random.key(0))
    return jax.vmap(probes)(ws)


def _chunk_size(steps: int) -> int:
    """The largest divisor of `steps` that gives at least ~20 chunks (one compilation)."""
    target = max(1, steps // 20)
    return max(c for c in range(1, target + 1) if steps % c == 0)


def train(config: Config, setup_: Optional[Setup] = None, *, progress: bool = True) -> dict:
    """Train the Transformer for every step size in `config.lrs` (same batches for each).

    **Returns:** a dict of numpy arrays, L = len(lrs), S = steps:

    - `loss` (the trained objective), `induction_loss`, `all_loss` (mean over all
      positions), `induction_accuracy`: (L, S), on the batch of each step, before its update
      (induction quantities over trigger-output positions only).
    - `margins_O`, `margins_K`: (L, S + 1, N), the memory margins of W_O^2 and W_K^2 (see
      `probe_scores`), before each step and after the last.
    - `probe_loss`: (L, S + 1), sum_k p_k CE of the W_O^2 probe, p the law of the copied
      token (the population loss of the associative memory W_O^2 faces).
    - `first_bad_step`: (L,), first step with a non-finite loss, else -1.
    """
    s = setup(config) if setup_ is None else setup_
    L = len(config.lrs)
    lrs = jnp.asarray(config.lrs, _model.DTYPE)
    ws = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (L,) + a.shape), s.w0)
    data_key = jax.random.fold_in(jax.random.key(config.seed), 7)
    c = _chunk_size(config.steps)
    rows = []
    with progress_bar(config.steps, f"transformer {config.train} d={config.d}", "step", enabled=progress) as bar:
        for start in range(0, config.steps, c):
            ws, r = _chunk(ws, lrs, jnp.asarray(start), s, config.train, config.objective, config.batch, data_key, c)
            rows.append(jax.device_get(r))
            bar.update(c)
    last = jax.device_get(_final_probes(ws, s))
    out = {k: np.concatenate([r[k] for r in rows], axis=0) for k in rows[0]}
    out = {k: np.moveaxis(a, 0, 1) for k, a in out.items()}  # (L, S, ...)
    for k in ("margins_O", "margins_K", "probe_loss"):
        out[k] = np.concatenate([out[k], np.asarray(last[k])[:, None]], axis=1)
    bad = ~np.isfinite(out["loss"])
    out["first_bad_step"] = np.where(bad.any(1), bad.argmax(1), -1)
    out["weights"] = ws
    return out
