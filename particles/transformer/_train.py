"""Training the Transformer with SGD (torch semantics), every step size on the same batches.

One step for a trainable array w with gradient g: g <- g + weight_decay * w;
buf <- momentum * buf + g (buf starts at 0, so the first step uses g, as torch does);
w <- w − lr * buf. The loss is the authors' `loss_head_only`: the mean cross-entropy over
the positions of the batch whose target is a trigger's output at its second or later
occurrence (`counts >= 2`), or, with `objective="all"`, over every position.
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._progress import progress_bar
from . import _data, _model


from ._config import MODES, Config  # noqa: F401  (re-exported for callers of _train)


# ------------------------------------------------------------------ initial weights
def initial_params(config: Config, *, start_params: Optional[_model.Params] = None, progress: bool = False):
    """The weights a run starts from (all step sizes start from the same).

    `start_params`: for `start="all"`, weights whose W_K^1, W_K^2 are used (e.g. a snapshot
    of an `all` run); when None they are trained here (an `all` run of `start_step` steps at
    `start_lr`).
    """
    key = jax.random.key(config.seed)
    k_init, k_refine = jax.random.split(jax.random.fold_in(key, 1))
    T = config.data.seq_len
    p = _model.init_params(config.model_config(), k_init, config.data.N, T)
    mode = MODES[config.mode]
    if mode.wo2_zero:
        p = p.replace(WO2=jnp.zeros_like(p.WO2))
    if config.start == "ideal":
        p = _model.ideal_keys(p)
        if config.refine_steps:
            p = eqx.filter_jit(_model.refine_keys)(p, config.data, k_refine, config.refine_steps,
                                                   sqrtd=config.attention_sqrtd)
    elif config.start == "all":
        if start_params is None:
            if config.start_step == 0:
                return p
            m = config.model_config()
            # The same model switches and seed: the `all` run starts from the same random init.
            pre = dataclasses.replace(config, mode="all", start=None, lrs=(config.start_lr,), steps=config.start_step,
                                      snapshot_steps=(), trainable=None, sqrtd_embeddings=m.sqrtd_embeddings,
                                      output_init=m.output_init, values=m.values)
            start_params = jax.tree_util.tree_map(lambda a: a[0], train(pre, progress=progress)["params"])
        p = p.replace(WK1=start_params.WK1, WK2=start_params.WK2)
    return p


# ------------------------------------------------------------------ one step
def _loss_terms(logits, y, on, objective: str):
    logp = jax.nn.log_softmax(logits, axis=-1)
    ce = -jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
    n_on = jnp.maximum(jnp.sum(on), 1)
    head = jnp.sum(jnp.where(on, ce, 0.0)) / n_on
    acc = jnp.sum(on & (jnp.argmax(logits, -1) == y)) / n_on
    return (head if objective == "head" else jnp.mean(ce)), (head, acc)


def _probes(p: _model.Params, key_tokens):
    S_O, S_K = _model.probe_scores(p, key_tokens)
    return _model.probe_margins(S_O), _model.probe_margins(S_K)


def _sgd(sub, g, buf, lr, momentum, wd):
    g = {n: g[n] + wd * sub[n] for n in sub}
    buf = {n: momentum * buf[n] + g[n] for n in sub}
    return {n: sub[n] - lr * buf[n] for n in sub}, buf


class _Settings(NamedTuple):
    # The static part of a Config (hashable: a jit cache key).
    names: tuple
    sqrtd: bool
    objective: str
    batch: int
    capacity: int  # W_O^2-only modes: counted positions kept per batch

    @classmethod
    def of(cls, c: Config, share: float) -> "_Settings":
        n = c.batch * c.data.seq_len
        # 25% above the expected count plus two sequences' worth: a 512-sequence batch never
        # comes near it (its count varies by a few percent).
        capacity = min(n, int(n * share * 1.25) + 2 * c.data.seq_len)
        return cls(c.trainable_names, c.attention_sqrtd, c.objective, c.batch, capacity)


def _make_step(st: _Settings, data: _data.DataConfig, p0: _model.Params, key_tokens, hyper):
    names = st.names
    T = data.seq_len
    sqrtd, objective = st.sqrtd, st.objective
    # Traced, not static: a new momentum or weight decay reuses the compiled loop.
    mom, wd = hyper[0], hyper[1]
    fast = names == ("WO2",)

    def row(p, loss, head, acc):
        mO, mK = _probes(p, key_tokens)
        return dict(loss=loss, head_loss=head, accuracy=acc, margins_O=mO, margins_K=mK)

    def one_general(state, lr, x, y, on):
        sub, buf = state
        p = p0.replace(**sub)

        def f(s):
            return _loss_terms(_model.forward(p.replace(**s), x, sqrtd), y, on, objective)

        (loss, (head, acc)), g = jax.value_and_grad(f, has_aux=True)(sub)
        new, buf = _sgd(sub, g, buf, lr, mom, wd)
        return (new, buf), row(p, loss, head, acc)

    def one_fast(state, lr, vt, bt, y, on):
        sub, buf = state
        p = p0.replace(**sub)

        def f(s):
            # W^T U^T first: (n, d) @ (d, N) instead of two (n, d) products.
            logits = bt + vt @ (s["WO2"].T @ p0.U.T)
            return _loss_terms(logits, y, on, objective)

        (loss, (head, acc)), g = jax.value_and_grad(f, has_aux=True)(sub)
        new, buf = _sgd(sub, g, buf, lr, mom, wd)
        return (new, buf), row(p, loss, head, acc)

    def step(states, lrs, key):
        tokens, counts = _data.sample(data, key, st.batch)
        x, y, on = tokens[:, :T], tokens[:, 1:], counts[:, 1:] >= 2
        if fast:
            # Every other array is frozen and shared by all step sizes: one forward pass per batch.
            vt, bt = _model.layer2_inputs(p0, x, sqrtd)
            d, N = vt.shape[-1], bt.shape[-1]
            vt, bt, y, on = vt.reshape(-1, d), bt.reshape(-1, N), y.reshape(-1), on.reshape(-1)
            dropped = jnp.zeros((), jnp.int32)
            if objective == "head" and st.capacity < on.size:
                # Only the counted positions enter the loss: gather them into a fixed-size
                # buffer (capacity well above the expected count; overflow is logged).
                n_on = jnp.sum(on)
                idx = jnp.nonzero(on, size=st.capacity, fill_value=0)[0]
                vt, bt, y = vt[idx], bt[idx], y[idx]
                on = jnp.arange(st.capacity) < n_on
                dropped = jnp.maximum(n_on - st.capacity, 0).astype(jnp.int32)
            states, rows = jax.vmap(one_fast, in_axes=(0, 0, None, None, None, None))(states, lrs, vt, bt, y, on)
            return states, dict(rows, dropped=jnp.broadcast_to(dropped, rows["loss"].shape))
        # Sequentially over step sizes: a vmap would hold every rate's activations at once.
        states, rows = jax.lax.map(lambda a: one_general(a[0], a[1], x, y, on), (states, lrs))
        return states, dict(rows, dropped=jnp.zeros(rows["loss"].shape, jnp.int32))

    return step


@eqx.filter_jit
def _chunk(states, lrs, start, p0, key_tokens, data_key, data, settings, hyper, n):
    step = _make_step(settings, data, p0, key_tokens, hyper)

    def body(states, k):
        states, r = step(states, lrs, jax.random.fold_in(data_key, k))
        return states, r

    return jax.lax.scan(body, states, start + jnp.arange(n))


@eqx.filter_jit
def _final_row(subs, p0, key_tokens):
    return jax.vmap(lambda s: _probes(p0.replace(**s), key_tokens))(subs)


def _chunk_size(steps: int, snapshots: tuple) -> int:
    """The largest divisor of `steps` (and of every snapshot step) giving >= ~20 chunks."""
    target = max(1, steps // 20)
    return max(c for c in range(1, target + 1) if steps % c == 0 and all(s % c == 0 for s in snapshots))


def train(config: Config, p0: Optional[_model.Params] = None, *, progress: bool = True) -> dict:
    """Train for every step size of `config.lrs` on the same batches.

    **Arguments:** the [`Config`][]; `p0`, the starting weights (default
    [`initial_params`][]); `progress`, a bar on stderr.

    **Returns:** a dict (the raw log that [`run`][] turns into a [`Run`][]); L = len(lrs),
    S = steps, n = rows of the W_K^2 probe:

    - `loss` (the trained objective), `head_loss`, `accuracy` (L, S): on the batch of
      each step, before its update, over the counted positions (accuracy: argmax = target).
    - `margins_O` (L, S + 1, N), `margins_K` (L, S + 1, n): the memory probes, before each
      step and after the last.
    - `first_bad_step` (L,): the first step with a non-finite loss, else −1.
    - `params`: the final weights, a [`Params`][] with a leading axis L.
    - `snapshots`: {step: Params with axis L} at `config.snapshot_steps`.
    - `seconds`: wall time of the training loop.
    """
    t0 = time.perf_counter()
    p0 = initial_params(config, progress=progress) if p0 is None else p0
    L = len(config.lrs)
    names = config.trainable_names
    key_tokens = config.key_tokens()
    key_tokens = None if key_tokens is None else jnp.asarray(key_tokens)
    subs = {n: jnp.broadcast_to(getattr(p0, n), (L,) + getattr(p0, n).shape) for n in names}
    states = (subs, {n: jnp.zeros_like(a) for n, a in subs.items()})
    lrs = jnp.asarray(config.lrs, _model.DTYPE)
    data_key = jax.random.fold_in(jax.random.key(config.seed), 2)
    snaps_wanted = tuple(s for s in config.snapshot_steps if s > 0)
    c = _chunk_size(config.steps, snaps_wanted)
    n_pos = config.batch * config.data.seq_len
    # The counted share sizes the gather buffer; small batches are not gathered at all.
    share = 1.0 if n_pos <= 8192 else _data.statistics(config.data, jax.random.key(99), 256, 256)["share"]
    settings = _Settings.of(config, share)
    hyper = jnp.asarray([config.momentum, config.weight_decay], _model.DTYPE)
    rows, snapshots = [], {}
    if 0 in config.snapshot_steps:
        snapshots[0] = _with(p0, states[0])
    with progress_bar(config.steps, f"transformer {config.mode} d={config.d}", "step", enabled=progress) as bar:
        for start in range(0, config.steps, c):
            states, r = _chunk(states, lrs, jnp.asarray(start), p0, key_tokens, data_key, config.data, settings, hyper, c)
            rows.append(jax.device_get(r))
            if start + c in snaps_wanted:
                snapshots[start + c] = _with(p0, states[0])
            bar.update(c)
    mO, mK = jax.device_get(_final_row(states[0], p0, key_tokens))
    out = {k: np.moveaxis(np.concatenate([r[k] for r in rows], axis=0), 0, 1) for k in rows[0]}
    out["margins_O"] = np.concatenate([out["margins_O"], np.asarray(mO)[:, None]], axis=1)
    out["margins_K"] = np.concatenate([out["margins_K"], np.asarray(mK)[:, None]], axis=1)
    out["dropped"] = out["dropped"][0]
    if out["dropped"].any():
        raise RuntimeError(f"{int(out['dropped'].max())} counted positions of a batch did not fit the buffer of "
                           f"{settings.capacity}: a bug in the capacity rule, please report it.")
    bad = ~np.isfinite(out["loss"])
    out["first_bad_step"] = np.where(bad.any(1), bad.argmax(1), -1)
    out["params"] = _with(p0, states[0])
    out["p0"] = p0
    out["snapshots"] = snapshots
    out["seconds"] = time.perf_counter() - t0
    return out


def _with(p0: _model.Params, subs: dict) -> _model.Params:
    """p0 broadcast over the L step sizes, with the trained arrays `subs` (each (L, ...))."""
    L = next(iter(subs.values())).shape[0]
    full = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (L,) + a.shape), p0)
    return full.replace(**subs)
