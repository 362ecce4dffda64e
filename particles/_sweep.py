"""Sweeps: a grid of GD (or SGD) runs, one compiled, vmapped call per chunk of cells.

A sweep records, per cell, the events of the run (`particles.events`, every step) and its
end: no trajectory is kept, so a grid of 10⁶ cells costs the memory of one chunk. Values
enter the compiled cell as arrays, so the grid compiles once per shape (each distinct n,
m, d) and a repeated call with new values reuses the compilation. Cells are cut into
chunks (the last one padded) that are sharded over every JAX device; with a checkpoint
file the result so far is written after each chunk and an interrupted sweep resumes.

The paper's two-particle grid, asking only what the margin map carries, runs on the
margin-map kernel of `particles.two_particle_hitting_times` (tested equal to this cell).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
from typing import Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import _distributed, _driver, _events, _families, _grid, _results
from ._cell import INTEGER_METRICS, METRICS, PROBLEM_KEY, run_cell
from . import _validate as v
from ._geometry import frequencies
from ._status import Status

KERNEL_METRICS = _grid.KERNEL_METRICS
"""The metrics the two-particle margin-map kernel computes (a sweep asking only these on a
two-particle grid runs on it)."""

MEMORY_BUDGET = 2.0**28
"""Bytes of working memory a chunk of cells may use (sets the default chunk size)."""


@dataclasses.dataclass(frozen=True)
class _Cell:
    """Everything static about a cell: hashable, so the compiled sweep is cached on it."""

    family: _families.Family
    shapes: tuple
    steps: int
    batch_size: Optional[int]
    init_std: float
    tol: _events.Tolerances


@functools.partial(jax.jit, static_argnames=("cell", "metrics"))
def _run_cells(values: dict, cell: _Cell, metrics: tuple) -> dict:
    shapes = dict(cell.shapes)

    def one(point):
        point = dict(point)
        lr, seed = point.pop("lr"), point.pop("seed", jnp.asarray(0))
        key = _families.seed_key(seed)
        problem = cell.family.build(shapes, point, jax.random.fold_in(key, PROBLEM_KEY))
        out = run_cell(problem, jnp.asarray(lr, problem.dtype), cell.steps, key,
                       batch_size=cell.batch_size, init_std=cell.init_std, tol=cell.tol)
        return {k: out[k] for k in metrics}

    return jax.vmap(one)(values)


# --------------------------------------------------------------- the result
@_results.register("sweep")
@dataclasses.dataclass(frozen=True)
class Sweep:
    """A finished (or partial) sweep: axis values and one array per metric, shaped by the axes.

    **Fields:** `axes` (name → values, in the order given), `outputs` (metric → array of
    shape `shape`), `config` (the family, steps and options, JSON-able), `chunks_computed`
    (in this call; fewer than `chunks_total` when resumed), `chunks_total`. In a partial
    sweep (a checkpoint) the cells not computed yet hold −2 in integer metrics (−1 means
    "never") and NaN in the others.
    """

    axes: dict
    outputs: dict
    config: dict
    chunks_computed: int = 0
    chunks_total: int = 0

    @property
    def shape(self) -> tuple:
        return tuple(len(a) for a in self.axes.values())

    @property
    def n_bad(self) -> int:
        """Cells whose run went non-finite."""
        return int(np.sum(self.outputs["status"] != Status.OK)) if "status" in self.outputs else 0

    def __repr__(self) -> str:
        axes = ", ".join(f"{k} ({len(a)})" for k, a in self.axes.items())
        return (f"Sweep({self.config.get('family')}, {self.config.get('steps')} steps over {axes}; "
                f"metrics {', '.join(self.outputs)}; {self.n_bad} non-finite cells)")

    def save(self, path, *, extra: Optional[dict] = None) -> None:
        """Write the sweep to one `.npz` file (see [`particles.save`][])."""
        _results.save(path, self, extra=extra)

    def _arrays(self) -> dict:
        arrays = {f"axis.{k}": np.asarray(a) for k, a in self.axes.items()}
        arrays.update({f"out.{k}": np.asarray(a) for k, a in self.outputs.items()})
        return arrays

    def _metadata(self) -> dict:
        return dict(config=self.config, axes=list(self.axes), metrics=list(self.outputs),
                    chunks=[self.chunks_computed, self.chunks_total], settings=self.config)

    @classmethod
    def _from_saved(cls, arrays: dict, metadata: dict) -> "Sweep":
        axes = {k: arrays[f"axis.{k}"] for k in metadata["axes"]}
        outputs = {k: arrays[f"out.{k}"] for k in metadata["metrics"]}
        done, total = metadata.get("chunks", [0, 0])
        return cls(axes, outputs, metadata["config"], done, total)


# ---------------------------------------------------------------- the sweep
def expand_grid(axes: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """Every combination of the axis values, flattened in C order (last axis fastest).

    >>> {k: a.tolist() for k, a in expand_grid({"lr": [1, 2], "corr": [0.0, 0.5]}).items()}
    {'lr': [1, 1, 2, 2], 'corr': [0.0, 0.5, 0.0, 0.5]}
    """
    names = list(axes)
    if not names:
        return {}
    mesh = np.meshgrid(*[np.asarray(axes[k]) for k in names], indexing="ij")
    return {k: m.ravel() for k, m in zip(names, mesh)}


def _check_axes(family, axes) -> dict:
    out = {}
    allowed = ("lr", "seed") + family.shape_axes + family.value_axes
    for k, vals in axes.items():
        if k not in allowed:
            raise ValueError(f"axes has {k!r}, which is not allowed for the {family.name} family: "
                             f"use names among {allowed}.")
        a = np.asarray(vals, np.float64).ravel()
        if a.size < 1 or not np.all(np.isfinite(a)):
            raise ValueError(f"axes[{k!r}]={a.tolist()} is not allowed: give at least one finite value.")
        out[k] = a
    if "lr" not in out:
        raise ValueError("axes has no 'lr': a sweep needs learning rates.")
    if np.any(out["lr"] <= 0):
        raise ValueError(f"lr={out['lr'].tolist()} is not allowed: learning rates must be > 0.")
    if "seed" in out and (np.any(out["seed"] != np.round(out["seed"])) or np.any(out["seed"] < 0)):
        raise ValueError(f"seed={out['seed'].tolist()} is not allowed: integers >= 0.")
    family.check(out)
    return out


def _fingerprint(spec: dict) -> str:
    # Not sorted: the order of the axes is the order of the cells, and part of the sweep.
    return hashlib.sha256(json.dumps(spec, default=str).encode()).hexdigest()[:16]


def sweep(
    problem: str | Callable,
    axes: Mapping[str, Sequence[float]],
    steps: int,
    *,
    metrics: Sequence[str] = METRICS,
    batch_size: Optional[int] = None,
    init_std: float = 0.0,
    chunk_size: Optional[int] = None,
    checkpoint: Optional[str | os.PathLike] = None,
    resume: bool = False,
    progress: bool = False,
) -> Sweep:
    """Run GD (or SGD) at every point of a grid and record the events of each run.

    **Arguments:**

    - `problem`: a family name (`FAMILIES`: "equicorrelated", "two_particles", "sphere"),
      or a function `f(**values) -> Problem` of the value axes (traced under `vmap`; a
      parameter named `key` receives a PRNG key derived from the `seed` axis).
    - `axes`: ordered name → values. `lr` (the step size) is required; `seed` seeds SGD
      batches, random initial scores and random embeddings; the other names are the
      family's: shape axes n, m, d (each distinct value compiles once) and value axes
      corr and one frequency law among p1, log_odds, zipf.
    - `steps`: GD steps per cell.
    - `metrics`: the names among [`METRICS`][] to record.
    - `batch_size`: minibatch SGD with this batch (x ~ p, with replacement) instead of GD.
    - `init_std`: initial scores S0 + init_std · N(0, 1), drawn from the seed.
    - `chunk_size`: cells per compiled call; by default as many as fit in `MEMORY_BUDGET`.
    - `checkpoint`: a file; the sweep so far is written there after each chunk. With
      `resume=True` a partial sweep in it (of the same settings) is continued.
    - `progress`: a progress bar over chunks on stderr.

    Under `jax.distributed` (see `particles.distributed`) every process calls `sweep`
    with the same arguments: each chunk is sharded over every device of every process, its
    results gathered on every process, and only process 0 writes the checkpoint.

    **Returns:** a [`Sweep`][] (the same on every process).

    >>> import particles as pt
    >>> axes = {"lr": [0.5, 5.0], "corr": [0.8], "zipf": [0.0, 2.0]}
    >>> s = pt.sweep("equicorrelated", axes, 200, metrics=["first_full_accuracy"])
    >>> s.outputs["first_full_accuracy"][:, 0, :].tolist()  # rows: lr; columns: Zipf exponent
    [[1, 38], [1, 4]]
    """
    family = _families.of(problem)
    steps = v.check_count("steps", steps, 1)
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        v.fail("metrics", str(unknown or metrics), f"names among {METRICS}")
    if batch_size is not None:
        batch_size = v.check_count("batch_size", batch_size, 1)
    if not (np.isfinite(init_std) and init_std >= 0):
        v.fail("init_std", init_std, "a number >= 0")
    axes = _check_axes(family, axes)
    config = dict(family=family.name, steps=steps, metrics=list(metrics), batch_size=batch_size,
                  init_std=float(init_std), axes={k: a.tolist() for k, a in axes.items()}, doc=family.doc)
    config["fingerprint"] = _fingerprint(config)
    flat = expand_grid(axes)
    K = len(flat["lr"])
    kernel = (family.two_particles or (family.name == "equicorrelated" and set(axes.get("n", [2])) == {2}))
    if (kernel and set(metrics) <= set(KERNEL_METRICS) and batch_size is None and not init_std
            and set(axes) <= {"lr", "corr", "p1", "log_odds", "zipf", "n"}):
        outputs, chunks = _on_kernel(flat, steps, metrics), (1, 1)
        config["engine"] = "two-particle kernel"
    else:
        config["engine"] = "cells"
        outputs, chunks = _on_cells(family, flat, K, steps, metrics, batch_size, init_std, chunk_size, checkpoint,
                                    resume, progress, config)
    shape = tuple(len(a) for a in axes.values())
    shaped = {m: outputs[m].reshape(shape) for m in metrics}
    return Sweep(axes, shaped, config, *chunks)


def _on_kernel(flat, steps, metrics) -> dict:
    law = {k: flat[k] for k in _families.LAWS if k in flat}
    if "p1" in law:
        p1 = law["p1"]
    else:  # the same law as the generic cell's, one value per cell
        p1 = np.asarray(jax.vmap(lambda **kw: frequencies(2, **kw)[0])(**law)) if law else 2.0 / 3.0
    out = _grid.two_particle_events(flat.get("corr", 0.0), p1, flat["lr"], steps)
    return {m: np.asarray(out[m]) for m in metrics}


def _groups(family, flat, K) -> list:
    """Cell indices grouped by their shape axes: (shapes, indices)."""
    keys = [tuple(sorted(_families.shapes_of(family, {k: flat[k][i] for k in family.shape_axes if k in flat})
                         .items())) for i in range(K)] if family.shape_axes else [()] * K
    groups = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return [(key, np.asarray(idx)) for key, idx in groups.items()]


def _on_cells(family, flat, K, steps, metrics, batch_size, init_std, chunk_size, checkpoint, resume, progress,
              config):
    from ._problem import default_dtype

    tol = _events.Tolerances.for_run("gd", np.dtype(default_dtype()).name)
    ndev = len(jax.devices())
    chunks = []
    for shapes, idx in _groups(family, flat, K):
        size = chunk_size or _default_chunk(dict(shapes), len(idx), steps)
        size = ndev * math.ceil(size / ndev)
        cell = _Cell(family, shapes, steps, batch_size, float(init_std), tol)
        chunks += [(cell, idx[i:i + size], size) for i in range(0, len(idx), size)]
    # A checkpoint counts finished chunks: resuming it needs the same cells in the same chunks
    # (another chunk_size, memory budget or device count would cut the grid elsewhere).
    layout = config["chunks_layout"] = _fingerprint([ix.tolist() for _, ix, _ in chunks])
    outputs = {m: np.full(K, -2 if m in INTEGER_METRICS else np.nan,
                          np.int64 if m in INTEGER_METRICS else np.float64) for m in metrics}
    done = 0
    if checkpoint is not None and os.path.exists(checkpoint):
        if not resume:
            raise ValueError(f"checkpoint={os.fspath(checkpoint)} is not allowed: it holds an earlier sweep; pass "
                             "resume=True (--resume) to continue it, or choose another file.")
        prior = _results.load(checkpoint)
        if not isinstance(prior, Sweep) or prior.config.get("fingerprint") != config["fingerprint"]:
            raise ValueError(f"checkpoint={os.fspath(checkpoint)} is not allowed: it belongs to a different sweep "
                             "(other axes or axis order, steps or options); use a fresh file or drop resume.")
        if prior.config.get("chunks_layout") != layout:
            raise ValueError(f"checkpoint={os.fspath(checkpoint)} is not allowed: it was cut into other chunks "
                             "(chunk_size, memory budget or number of devices); resume with the same ones.")
        done = prior.chunks_computed
        for m in metrics:
            outputs[m] = prior.outputs[m].reshape(-1).copy()
    mesh = _mesh(ndev)
    names = list(flat)

    def advance(_, chunk):
        cell, idx, size = chunk
        values = {k: np.concatenate([flat[k][idx], np.repeat(flat[k][idx[:1]], size - len(idx))])
                  for k in names if k not in family.shape_axes}
        if "seed" in values:
            values["seed"] = values["seed"].astype(np.int64)
        if mesh is not None:  # every device of every process takes a share of the chunk
            values = _distributed.put(values, mesh)
        out = _distributed.gather(_run_cells(values, cell, metrics))
        for m in metrics:
            outputs[m][idx] = out[m][: len(idx)]
        return None, None

    def save_partial(_, pieces, n_done):
        if not _distributed.is_main():  # one process writes; the others hold the same numbers
            return
        partial = Sweep({"cell": np.arange(K)}, {m: outputs[m] for m in metrics}, config, n_done, len(chunks))
        _results.save(checkpoint, partial)

    _driver.drive(advance, None, chunks, sizes=[1] * len(chunks), done=done,
                  on_chunk=None if checkpoint is None else save_partial, progress=progress, desc="sweep",
                  unit="chunk")
    if checkpoint is not None:
        save_partial(None, None, len(chunks))
    return outputs, (len(chunks) - done, len(chunks))


def cell_bytes(shapes: dict) -> float:
    """Working memory of one cell (float64): its N x N and M x M Grams, scores, residual and
    the step's temporaries, about 16 N max(N, M) numbers, plus embeddings (N + M) x d. Sets
    the default chunk size, and lets the command line refuse a cell larger than the machine
    before anything is allocated."""
    n = shapes.get("n", 2)
    m = shapes.get("m", n) or n
    d = shapes.get("d", n) or n
    return 8.0 * (16 * n * max(m, n) + (n + m) * d + 256)


def _default_chunk(shapes: dict, n_cells: int, steps: int) -> int:
    return max(1, min(n_cells, int(MEMORY_BUDGET // cell_bytes(shapes))))


def _mesh(ndev: int):
    if ndev < 2:
        return None
    return jax.make_mesh((ndev,), ("cells",), axis_types=(jax.sharding.AxisType.Auto,))
