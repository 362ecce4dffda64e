"""Grid sweeps of gradient descent: one compiled, vmapped call per chunk of grid cells.

A sweep evaluates a scalar summary of a GD run (time to full accuracy, loss spikes, final
loss and margin) at every point of a grid of hyper-parameters. The hyper-parameters enter
the compiled function as arrays, so the whole grid compiles once per problem size N; the
cells are cut into equal chunks (the last one padded) that are

- evaluated by `jit(vmap(cell))`, sharded over all JAX devices when there are several;
- checkpointed one file per chunk, so an interrupted sweep resumes without losing a
  finished chunk and gives the same arrays as an uninterrupted one.

A cell whose scores turn non-finite is frozen at its last finite state and marked
(`status` 1, `first_bad_step`); the other cells carry on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from . import _observables as obs
from ._progress import progress_bar
from ._io import atomic_savez

AXES = ("lr", "corr", "p1", "log_odds", "n", "seed")
"""The hyper-parameters a GD sweep can vary."""

METRICS = ("first_full_accuracy", "loss_increases", "max_spike", "final_loss", "final_min_margin",
           "status", "first_bad_step")
"""What a GD sweep records per cell.

- `first_full_accuracy`: the first step at which every input is classified correctly
  (0 when the start already is), -1 when it never happens.
- `loss_increases`: how many steps raise the loss by more than a relative 1e-10
  (rounding noise at late times is not counted).
- `max_spike`: the largest rise of the loss above its running minimum, max_t (L_t - min_{s<=t} L_s).
- `final_loss`, `final_min_margin`: after the last step (NaN for a non-finite cell).
- `status`: 0 ok, 1 non-finite; `first_bad_step`: the first non-finite step, else -1.
"""

_REL_INCREASE = 1e-10


class SweepInterrupted(RuntimeError):
    """Raised when a sweep stops after `stop_after` chunks (a test of resuming)."""


# ------------------------------------------------------------------- grid
def expand_grid(axes: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """Every combination of the axis values, flattened in C order (last axis fastest).

    **Arguments:**

    - `axes`: an ordered mapping name -> 1-D values.

    **Returns:** name -> flat array of length prod(len(values)).
    """
    names = list(axes)
    if not names:
        return {}
    mesh = np.meshgrid(*[np.asarray(axes[k]) for k in names], indexing="ij")
    return {k: m.ravel() for k, m in zip(names, mesh)}


def _fingerprint(spec: dict) -> str:
    text = json.dumps(spec, sort_keys=True, default=lambda o: np.asarray(o).tolist())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the engine
def _mesh():
    devices = jax.devices()
    if len(devices) < 2:
        return None
    return jax.make_mesh((len(devices),), ("grid",), axis_types=(jax.sharding.AxisType.Auto,))


def run_chunks(
    cell: Callable[[dict], dict],
    params: Mapping[str, np.ndarray],
    *,
    chunk_size: int,
    checkpoint: Optional[str] = None,
    fingerprint: str = "",
    tag: str = "",
    progress: bool = False,
    stop_after: Optional[int] = None,
    done_before: int = 0,
) -> tuple[dict[str, np.ndarray], int]:
    """Evaluate `cell` at every point of `params` (flat arrays of equal length).

    **Arguments:**

    - `cell`: maps a dict of scalar arrays to a dict of scalar arrays; it is vmapped and
      compiled once (every chunk has `chunk_size` cells, the last one padded).
    - `params`: name -> flat array, all of one length K.
    - `chunk_size`: cells per compiled call (rounded up to a multiple of the device count).
    - `checkpoint`: a folder; each finished chunk is written there as
      `chunk-<tag><index>.npz` and read back instead of recomputed.
    - `fingerprint`: stored in each chunk file; a chunk with another fingerprint is an error.
    - `stop_after`: raise [`SweepInterrupted`][] once this many chunks (counting
      `done_before`) were computed in this process.

    **Returns:** (name -> array of length K, chunks computed in this call).
    """
    names = list(params)
    K = len(params[names[0]])
    mesh = _mesh()
    ndev = 1 if mesh is None else mesh.size
    chunk_size = max(1, int(chunk_size))
    chunk_size = ndev * math.ceil(chunk_size / ndev)
    fn = jax.jit(jax.vmap(cell))
    pieces: list[dict] = []
    computed = 0
    n_chunks = math.ceil(K / chunk_size)
    with progress_bar(total=n_chunks, desc=f"sweep{(' ' + tag.rstrip('-')) if tag else ''}", unit="chunk",
                      enabled=progress) as bar:
        for i in range(n_chunks):
            path = None if checkpoint is None else os.path.join(checkpoint, f"chunk-{tag}{i:05d}.npz")
            if path is not None and os.path.exists(path):
                pieces.append(_read_chunk(path, fingerprint))
                bar.update(1)
                continue
            if stop_after is not None and done_before + computed >= stop_after:
                raise SweepInterrupted(
                    f"stopped after {done_before + computed} chunk(s) as asked; finished chunks are in "
                    f"{checkpoint}: rerun with --resume"
                )
            lo, hi = i * chunk_size, min(K, (i + 1) * chunk_size)
            chunk = {}
            for k in names:
                a = np.asarray(params[k][lo:hi])
                # Pad with the chunk's first cell: same shapes -> no recompilation.
                a = np.concatenate([a, np.repeat(a[:1], chunk_size - (hi - lo))])
                chunk[k] = a
            if mesh is not None:
                spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("grid"))
                chunk = {k: jax.device_put(a, spec) for k, a in chunk.items()}
            out = jax.tree_util.tree_map(lambda a: np.asarray(a)[: hi - lo], fn(chunk))
            if path is not None:
                atomic_savez(path, dict(out, __fingerprint__=np.frombuffer(fingerprint.encode(), np.uint8)))
            pieces.append(out)
            computed += 1
            bar.update(1)
    merged = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    return merged, computed


def _read_chunk(path: str, fingerprint: str) -> dict:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    got = arrays.pop("__fingerprint__", np.zeros(0, np.uint8)).tobytes().decode()
    if got != fingerprint:
        raise ValueError(
            f"checkpoint={os.path.dirname(path)} is not allowed: its chunk {os.path.basename(path)} belongs "
            "to a different sweep (other axes, steps or options); use a fresh output folder or drop --resume"
        )
    return arrays


# ----------------------------------------------------------- the GD cell
def frequencies(n: int, p1=None, log_odds=None, dtype=jnp.float64) -> Array:
    """p for `n` inputs: (p1, rest shared equally), or p ∝ (e^log_odds, 1, ..., 1), or Zipf(1).

    With n = 2: p1 gives (p1, 1 - p1), log_odds gives p1 = sigmoid(log_odds) (log(p1/p2)),
    and the default Zipf(1) is (2/3, 1/3).
    """
    if p1 is not None and log_odds is not None:
        raise ValueError("p1 and log_odds both given: they set the same frequency; give one.")
    if log_odds is not None:
        w = jnp.concatenate([jnp.exp(jnp.asarray(log_odds, dtype))[None], jnp.ones(n - 1, dtype)])
        return w / w.sum()
    if p1 is not None:
        p1 = jnp.asarray(p1, dtype)
        rest = jnp.broadcast_to((1 - p1) / max(n - 1, 1), (n - 1,))
        return jnp.concatenate([p1[None], rest])
    w = 1.0 / jnp.arange(1, n + 1, dtype=dtype)
    return w / w.sum()


def gd_cell(n: int, steps: int, *, sgd_batch: Optional[int] = None, init_std: float = 0.0,
            dtype=jnp.float64) -> Callable[[dict], dict]:
    """The summary of one GD run on the equicorrelated system, as a function of its parameters.

    The system: n unit inputs with pairwise correlation `corr` (G_E = (1-corr) I + corr 11^T),
    orthonormal outputs (G_U = I), f*(x) = x, frequencies from [`frequencies`][]; scores start
    at 0, or at `init_std` * N(0, 1) drawn from `seed`. With `sgd_batch`, minibatch SGD with
    batches drawn from `seed` replaces full-batch GD.

    **Returns:** `cell(params) -> metrics` with params among `lr`, `corr`, `p1`, `log_odds`,
    `seed` (scalars; `lr` is required) and the metrics of [`METRICS`][].
    """
    eye = jnp.eye(n, dtype=dtype)
    Y = eye

    def cell(params: dict) -> dict:
        lr = jnp.asarray(params["lr"], dtype)
        corr = jnp.asarray(params.get("corr", 0.0), dtype)
        p = frequencies(n, params.get("p1"), params.get("log_odds"), dtype)
        seed = jnp.asarray(params.get("seed", 0)).astype(jnp.uint32)
        key = jax.random.key(seed)
        k_init, k_batch = jax.random.split(key)
        G_E = (1 - corr) * eye + corr * jnp.ones((n, n), dtype)
        S0 = init_std * jax.random.normal(k_init, (n, n), dtype) if init_std else jnp.zeros((n, n), dtype)

        def weights(k):
            if sgd_batch is None:
                return p
            idx = jax.random.categorical(jax.random.fold_in(k_batch, k), jnp.log(p), shape=(sgd_batch,))
            return jnp.zeros(n, dtype).at[idx].add(1.0 / sgd_batch)

        def full(S):
            return jnp.all(obs.correct(S, Y))

        L0 = obs.loss(S0, p, Y)
        int_t = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32
        carry0 = dict(S=S0, L=L0, low=L0, first=jnp.where(full(S0), 0, -1).astype(int_t),
                      inc=jnp.zeros((), int_t), spike=jnp.zeros((), dtype), bad=jnp.asarray(-1, int_t))

        def step(c, k):
            w = weights(k)
            S = c["S"] - lr * (G_E @ (w[:, None] * obs.residual(c["S"], Y)))
            L = obs.loss(S, p, Y)
            ok = jnp.all(jnp.isfinite(S)) & jnp.isfinite(L) & (c["bad"] < 0)
            S = jnp.where(ok, S, c["S"])
            L_used = jnp.where(ok, L, c["L"])
            low = jnp.minimum(c["low"], L_used)
            new = dict(
                S=S,
                L=L_used,
                low=low,
                first=jnp.where((c["first"] < 0) & ok & full(S), k + 1, c["first"]),
                inc=c["inc"] + (ok & (L_used > c["L"] * (1 + _REL_INCREASE))).astype(int_t),
                spike=jnp.maximum(c["spike"], L_used - low),
                bad=jnp.where((c["bad"] < 0) & ~ok, k + 1, c["bad"]),
            )
            return new, None

        c, _ = jax.lax.scan(step, carry0, jnp.arange(steps, dtype=int_t))
        bad = c["bad"] >= 0
        nan = jnp.asarray(jnp.nan, dtype)
        return dict(
            first_full_accuracy=c["first"],
            loss_increases=c["inc"],
            max_spike=c["spike"],
            final_loss=jnp.where(bad, nan, c["L"]),
            final_min_margin=jnp.where(bad, nan, jnp.min(obs.margins(c["S"], Y))),
            status=bad.astype(int_t),
            first_bad_step=c["bad"],
        )

    return cell


# --------------------------------------------------------------- the sweep
@dataclasses.dataclass
class Sweep:
    """A finished sweep: axis values and one array per metric, shaped by the axes.

    **Fields:** `axes` (name -> values), `outputs` (metric -> array of shape
    (len(axes[a]) for a in axes)), `config` (steps and options), `chunks_computed`
    (in this process; fewer than the total when resumed).
    """

    axes: dict
    outputs: dict
    config: dict
    chunks_computed: int = 0
    chunks_total: int = 0

    @property
    def shape(self) -> tuple:
        return tuple(len(v) for v in self.axes.values())

    @property
    def n_bad(self) -> int:
        return int(np.sum(self.outputs["status"] != 0))


def sweep_gd(
    axes: Mapping[str, Sequence[float]],
    steps: int,
    *,
    sgd_batch: Optional[int] = None,
    init_std: float = 0.0,
    chunk_size: Optional[int] = None,
    memory_budget: float = 2.0**28,
    checkpoint: Optional[str] = None,
    resume: bool = False,
    progress: bool = False,
    stop_after: Optional[int] = None,
) -> Sweep:
    """Sweep GD on the equicorrelated system over a grid (see [`gd_cell`][]).

    **Arguments:**

    - `axes`: ordered name -> values, names among [`AXES`][]; `lr` is required; `n`
      defaults to 2. Each distinct `n` compiles once (the score shape changes).
    - `steps`: GD steps per cell.
    - `sgd_batch`, `init_std`: as in [`gd_cell`][].
    - `chunk_size`: cells per compiled call; by default the whole grid (per n) when it fits
      in `memory_budget` bytes, fewer otherwise.
    - `checkpoint`: folder for per-chunk files; with `resume=True` finished chunks are
      reused (and must come from the same sweep), otherwise the folder must hold none.
    - `stop_after`: stop after this many computed chunks (raises [`SweepInterrupted`][]).

    **Returns:** a [`Sweep`][].
    """
    axes = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in axes.items()}
    for k, vals in axes.items():
        if k not in AXES:
            raise ValueError(f"axes has {k!r}, which is not allowed: use names among {AXES}.")
        if vals.size < 1 or not np.all(np.isfinite(vals)):
            raise ValueError(f"axes[{k!r}]={vals.tolist()} is not allowed: give at least one finite value.")
    if "lr" not in axes:
        raise ValueError("axes has no 'lr': a GD sweep needs learning rates.")
    if np.any(axes["lr"] <= 0):
        raise ValueError(f"lr={axes['lr'].tolist()} is not allowed: learning rates must be > 0.")
    if "p1" in axes and "log_odds" in axes:
        raise ValueError("axes has both 'p1' and 'log_odds': they set the same frequency; sweep one.")
    if "p1" in axes and np.any((axes["p1"] <= 0) | (axes["p1"] >= 1)):
        raise ValueError(f"p1={axes['p1'].tolist()} is not allowed: frequencies must lie in (0, 1).")
    ns = axes.get("n", np.array([2.0]))
    if np.any(ns != np.round(ns)) or np.any(ns < 2):
        raise ValueError(f"n={ns.tolist()} is not allowed: integers >= 2.")
    if "corr" in axes:
        lo = -1.0 / (ns.max() - 1)
        if np.any(axes["corr"] < lo) or np.any(axes["corr"] > 1):
            raise ValueError(f"corr={axes['corr'].tolist()} is not allowed: it must lie in [{lo:g}, 1] "
                             f"(equicorrelated unit vectors for n up to {int(ns.max())}).")
    if "seed" in axes and (np.any(axes["seed"] != np.round(axes["seed"])) or np.any(axes["seed"] < 0)):
        raise ValueError(f"seed={axes['seed'].tolist()} is not allowed: integers >= 0.")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps={steps!r} is not allowed: an int >= 1.")

    config = dict(steps=int(steps), sgd_batch=sgd_batch, init_std=float(init_std), chunk_size=chunk_size,
                  system="equicorrelated inputs, orthonormal outputs, f*(x)=x, S0=0 unless init_std")
    fp = _fingerprint(dict(axes={k: v for k, v in axes.items()}, **config))
    if checkpoint is not None:
        os.makedirs(checkpoint, exist_ok=True)
        existing = [f for f in os.listdir(checkpoint) if f.startswith("chunk-")]
        if existing and not resume:
            raise ValueError(
                f"checkpoint={checkpoint} is not allowed: it already holds {len(existing)} chunk file(s) "
                "of an earlier sweep; pass --resume to continue it or choose another folder"
            )

    flat = expand_grid(axes)
    K = len(next(iter(flat.values())))
    n_flat = flat.get("n", np.full(K, 2.0)).astype(int)
    outputs = {m: np.empty(K, np.float64) for m in METRICS}
    computed = total = 0
    for n in np.unique(n_flat):
        idx = np.nonzero(n_flat == n)[0]
        params = {k: v[idx] for k, v in flat.items() if k != "n"}
        if "seed" in params:
            params["seed"] = params["seed"].astype(np.int64)
        per_cell = 8.0 * (12 * n * n + 64) * max(1, 1)
        size = chunk_size or max(1, min(len(idx), int(memory_budget // per_cell)))
        cell = gd_cell(int(n), int(steps), sgd_batch=sgd_batch, init_std=init_std)
        out, done = run_chunks(cell, params, chunk_size=size, checkpoint=checkpoint, fingerprint=fp,
                               tag=f"n{int(n)}-", progress=progress, stop_after=stop_after,
                               done_before=computed)
        computed += done
        total += math.ceil(len(idx) / size)
        for m in METRICS:
            outputs[m][idx] = out[m]
    shape = tuple(len(v) for v in axes.values())
    shaped = {}
    for m in METRICS:
        a = outputs[m].reshape(shape)
        shaped[m] = a.astype(np.int64) if m in ("first_full_accuracy", "loss_increases", "status",
                                                 "first_bad_step") else a
    return Sweep(axes=axes, outputs=shaped, config=dict(config, fingerprint=fp), chunks_computed=computed,
                 chunks_total=total)
