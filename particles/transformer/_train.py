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

from .. import _validate as v
from .._progress import progress_bar
from . import _data, _model


class Mode(NamedTuple):
    trainable: tuple
    model: dict  # overrides of ModelConfig's defaults
    start: Optional[str]  # default starting point of the key matrices (W_O^2-only modes)
    wo2_zero: bool  # W_O^2 starts at 0 instead of its random init
    doc: str


MODES = {
    "wo2": Mode(("WO2",), {}, "random", False,
                "the paper's `wo2only` runs: W_O^2 alone learns; every other matrix, E and U stay at their "
                "random init (or the key matrices of `start`)"),
    "all": Mode(("WK1", "WK2", "WO2"), {}, None, False,
                "the authors' trainable set: W_K^1, W_K^2, W_O^2 learn from random init; W_V^1, W_O^1, W_V^2, E "
                "and U stay frozen (their README freezes E and U)"),
    "wo2_identity": Mode(("WO2",), dict(sqrtd_embeddings=True, output_init="normal", values="identity"), "ideal", True,
                         "the project's `wo2` before issue #14, kept to compare: identity values (W_V^1 = W_V^2 = I, "
                         "W_O^1 orthogonal), E, P, U ~ N(0, I/d), refined ideal key memories, W_O^2 = 0; W_O^2 then "
                         "reads clean token embeddings, but its loss is 9x sharper than the original's"),
    "all6": Mode(_model.MATRICES, {}, None, False,
                 "all six matrices learn (the project's `all6` before issue #14); the authors keep W_V^1, W_O^1, "
                 "W_V^2 frozen, and this diverges at eta >= 5"),
}
STARTS = ("random", "all", "ideal")
OBJECTIVES = ("head", "all")


@dataclasses.dataclass(frozen=True)
class Config:
    """One experiment: data, model, optimizer, step sizes, starting point. Validated on
    construction (a `ValueError` naming the field).

    **Fields:**

    - `mode`: one of [`MODES`][] ("wo2", "all", "wo2_identity", "all6"): what learns.
    - `data`: a [`DataConfig`][] (default `DataConfig.paper()`: k = 5 fixed triggers, T = 256).
    - `d`; `sqrtd_embeddings`, `output_init`, `values`, `attention_sqrtd`: the
      [`ModelConfig`][] switches (None: the mode's default, the authors' for wo2/all).
    - `trainable`: override of the mode's trainable arrays (names among E, U and the six
      matrices; e.g. add "E", "U" for the authors' unfrozen-embedding default).
    - `lrs`: SGD step sizes, run side by side on the same batches; `steps`; `batch`
      (sequences per step, 512 in the paper); `momentum` (0: the paper's `nomo` runs);
      `weight_decay` (1e-4, the authors' default); `objective` ("head": counted positions
      only, the authors' `loss_head_only`; "all": every position).
    - `start` (W_O^2-only modes): "random" (the key matrices at their random init),
      "all" (W_K^1, W_K^2 of an `all` run at step `start_step` with step size `start_lr`,
      same seed, batch and optimizer) or "ideal" (the outer-product memories of
      [`ideal_keys`][], refined with `refine_steps` Adam steps each). W_O^2 restarts at
      its random init (0 for "wo2_identity").
    - `seed`: one seed for the initialisation, the batches and the refinement.
    - `snapshot_steps`: steps at which W_K^1, W_K^2 are kept (for `start="all"` runs).

    >>> Config(mode="wo2", d=8, lrs=(1.0,), steps=2, batch=2, data=_data.DataConfig.paper(seq_len=8)).model_config().d
    8
    """

    mode: str = "wo2"
    data: Optional[_data.DataConfig] = None
    d: int = 64
    lrs: tuple = (20.0, 50.0, 100.0, 200.0)
    steps: int = 1000
    batch: int = 512
    momentum: float = 0.0
    weight_decay: float = 1e-4
    objective: str = "head"
    start: Optional[str] = None
    start_step: int = 100
    start_lr: float = 10.0
    refine_steps: int = 300
    sqrtd_embeddings: Optional[bool] = None
    output_init: Optional[str] = None
    values: Optional[str] = None
    attention_sqrtd: bool = True
    trainable: Optional[tuple] = None
    seed: int = 0
    snapshot_steps: tuple = ()

    def __post_init__(self):
        if self.mode not in MODES:
            v.fail("mode", self.mode, f"use one of {tuple(MODES)}")
        if self.data is None:
            object.__setattr__(self, "data", _data.DataConfig.paper())
        elif not isinstance(self.data, _data.DataConfig):
            v.fail("data", type(self.data).__name__, "a DataConfig (e.g. DataConfig.paper())")
        if self.objective not in OBJECTIVES:
            v.fail("objective", self.objective, f"use one of {OBJECTIVES}")
        v.check_count("steps", self.steps, 1)
        v.check_count("batch", self.batch, 1)
        v.check_count("seed", self.seed, 0)
        v.check_count("refine_steps", self.refine_steps, 0)
        v.check_count("start_step", self.start_step, 0)
        lrs = np.asarray(self.lrs, dtype=np.float64)
        if lrs.ndim != 1 or lrs.size == 0:
            v.fail("lrs", self.lrs, "a non-empty list of step sizes")
        v.check_positive("lrs", lrs)
        object.__setattr__(self, "lrs", tuple(float(x) for x in lrs))
        v.check_positive("start_lr", self.start_lr)
        for name in ("momentum", "weight_decay"):
            x = getattr(self, name)
            if not (isinstance(x, (int, float)) and np.isfinite(x) and x >= 0):
                v.fail(name, x, "a finite number >= 0")
        if not 0 <= self.momentum < 1:
            v.fail("momentum", self.momentum, "it must lie in [0, 1)")
        mode = MODES[self.mode]
        start = mode.start if self.start is None else self.start
        if mode.start is None:
            if self.start is not None:
                v.fail("start", self.start, f"only the W_O^2-only modes take a starting point, not mode={self.mode!r}")
        elif start not in STARTS:
            v.fail("start", start, f"use one of {STARTS}")
        object.__setattr__(self, "start", start)
        if self.trainable is not None:
            bad = [n for n in self.trainable if n not in _model.TRAINABLE_NAMES]
            if bad or not self.trainable:
                v.fail("trainable", self.trainable, f"a non-empty tuple of names among {_model.TRAINABLE_NAMES}")
            object.__setattr__(self, "trainable", tuple(self.trainable))
        snaps = tuple(int(s) for s in self.snapshot_steps)
        if any(s < 0 or s > self.steps for s in snaps):
            v.fail("snapshot_steps", self.snapshot_steps, f"steps between 0 and steps={self.steps}")
        object.__setattr__(self, "snapshot_steps", snaps)
        self.model_config()  # validates the model switches

    @property
    def trainable_names(self) -> tuple:
        return MODES[self.mode].trainable if self.trainable is None else self.trainable

    def model_config(self) -> _model.ModelConfig:
        """The resolved [`ModelConfig`][] (the mode's defaults, then the explicit switches)."""
        kw = dict(MODES[self.mode].model)
        for name in ("sqrtd_embeddings", "output_init", "values"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        return _model.ModelConfig(d=v.check_count("d", self.d, 1), attention_sqrtd=self.attention_sqrtd, **kw)

    def key_tokens(self) -> Optional[np.ndarray]:
        """Rows of the W_K^2 probe: the fixed triggers, else every token (as the authors)."""
        return np.asarray(self.data.triggers) if self.data.fixed_triggers else None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "data"}
        out["data"] = self.data.to_dict()
        out["model"] = self.model_config().to_dict()
        out["trainable"] = list(self.trainable_names)
        out["lrs"] = list(self.lrs)
        out["snapshot_steps"] = list(self.snapshot_steps)
        return out

    def describe(self) -> str:
        """One line: the exact setting, for figure titles."""
        m = self.model_config()
        s = f"{self.mode}" + (f" from {self.start} keys" if self.start else "")
        s += (f", d={m.d}, batch={self.batch}, momentum={self.momentum:g}, wd={self.weight_decay:g}, "
              f"E,P~N(0,{'1/d' if m.sqrtd_embeddings else '1'}), U {m.output_init}, values {m.values}")
        return s + f"; {self.data.describe()}"


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
