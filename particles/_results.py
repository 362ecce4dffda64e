"""One file format for every result: a `.npz` of arrays plus JSON metadata, no pickles.

A result type registers itself with [`register`][] and implements three small hooks:
`_arrays()` (name -> numpy array), `_metadata()` (JSON-able dict) and the classmethod
`_from_saved(arrays, metadata)`. Then [`save`][] writes any of them, with the package
versions, the problem it ran on (optional) and free-form `extra`, atomically; [`load`][]
reads any of them back as the right type, refusing corrupt or foreign files with a
`ValueError`.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Optional

import numpy as np

from ._io import atomic_savez, jsonable, versions

FORMAT = "particles"
FORMAT_VERSION = 2
# Version 1 wrote trajectories only (format "particles.trajectory"); it still loads.
_V1_TRAJECTORY = "particles.trajectory"
_META = "__meta__"
_PROBLEM_ARRAYS = ("p", "Y", "G_E", "G_U", "S0", "E", "U", "W0", "offset")

_TYPES: dict[str, type] = {}
# Result kinds whose class lives in a subpackage that loads on first use.
_LAZY = {"transformer_": "particles.transformer"}


def register(kind: str):
    """Class decorator: results of this class are saved with `"kind": kind` and loaded as it.

    **Returns:** the decorator.
    """

    def deco(cls):
        _TYPES[kind] = cls
        cls._kind = kind
        return cls

    return deco


class Saved:
    """What a result file holds besides the result: `metadata` (the result's own),
    `extra`, `versions`, and the `problem` when one was saved."""

    def __init__(self, result, metadata: dict, extra: dict, versions: dict, problem):
        self.result, self.metadata, self.extra, self.versions, self.problem = result, metadata, extra, versions, problem


def save(path: str | os.PathLike, result, *, problem=None, extra: Optional[dict] = None) -> None:
    """Write `result` (any registered result type) to one `.npz` file, atomically.

    **Arguments:**

    - `path`: the file; written to a temporary name beside it and renamed, so an
      interrupt or a full disk never leaves a truncated file that loads.
    - `result`: a [`Trajectory`][], [`VocabTrajectory`][], [`Sweep`][] or another
      registered result.
    - `problem`: the [`Problem`][] it ran on, stored too (read it with [`load_problem`][]).
    - `extra`: anything JSON-able (configuration, seed, notes).

    **Returns:** None.

    >>> import os, tempfile, particles as pt
    >>> problem = pt.orthogonal([0.5, 0.5])
    >>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
    >>> pt.save(path, pt.gd(problem, 1.0, 10), problem=problem, extra={"note": "first try"})
    >>> traj = pt.load(path)
    >>> type(traj).__name__, traj.loss.shape, pt.load_problem(path).N
    ('Trajectory', (11,), 2)
    """
    kind = getattr(type(result), "_kind", None)
    if kind is None:
        raise ValueError(f"result of type {type(result).__name__} is not allowed: save a particles result "
                         f"({', '.join(sorted(_TYPES))}).")
    arrays = {k: np.asarray(v) for k, v in result._arrays().items() if v is not None}
    problem_meta = None
    if problem is not None:
        for name in _PROBLEM_ARRAYS:
            value = getattr(problem, name)
            if value is not None:
                arrays[f"problem.{name}"] = np.asarray(value)
        problem_meta = dict(structure_E=problem.structure_E, structure_U=problem.structure_U)
    meta = dict(format=FORMAT, format_version=FORMAT_VERSION, kind=kind, metadata=jsonable(result._metadata()),
                extra=jsonable(extra or {}), versions=versions(), problem=problem_meta)
    arrays[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_savez(path, arrays)


def _read(path) -> tuple[dict, dict]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile, format or pickle errors all mean "not a result file"
        raise ValueError(f"{path}: not a readable particles result ({type(e).__name__}: {e})") from None
    if _META not in arrays:
        raise ValueError(f"{path}: not a particles result (no metadata); files written by simulate.py before "
                         "version 0.2 hold one array per run and field: read them with numpy.load")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except Exception as e:
        raise ValueError(f"{path}: corrupt metadata ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: corrupt metadata (not a mapping)")
    if meta.get("format") == _V1_TRAJECTORY and meta.get("format_version") == 1:
        meta = dict(meta, format=FORMAT, kind="trajectory", metadata=meta.get("info"))
    elif meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    elif meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {meta.get('format_version')} cannot be read by this "
                         f"particles (it reads version {FORMAT_VERSION} and trajectories of version 1)")
    if not isinstance(meta.get("metadata"), dict):
        raise ValueError(f"{path}: corrupt metadata (no 'metadata' mapping)")
    return arrays, meta


def load_saved(path: str | os.PathLike, kind: Optional[str] = None) -> Saved:
    """The result in `path` with everything saved beside it.

    **Arguments:** `path`; `kind` the expected result kind (e.g. "trajectory"), or None.

    **Returns:** a [`Saved`][]: `result`, `metadata`, `extra`, `versions`, `problem`.
    """
    arrays, meta = _read(path)
    got = meta.get("kind")
    for prefix, module in _LAZY.items():
        if got not in _TYPES and str(got).startswith(prefix):
            importlib.import_module(module)
    if got not in _TYPES:
        raise ValueError(f"{path}: result kind {got!r} is unknown (known: {', '.join(sorted(_TYPES))})")
    if kind is not None and got != kind:
        raise ValueError(f"{path}: holds a {got}, not a {kind}")
    own = {k: a for k, a in arrays.items() if not k.startswith("problem.")}
    try:
        result = _TYPES[got]._from_saved(own, meta["metadata"])
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: not a valid {got} ({e})") from None
    return Saved(result, meta["metadata"], meta.get("extra") or {}, meta.get("versions") or {},
                 _problem(arrays, meta))


def load(path: str | os.PathLike):
    """Read any particles result file; returns the right type (e.g. a [`Trajectory`][]).

    Raises `ValueError` for a corrupt, foreign or incompatible file, naming the cause.

    **Returns:** the result (see [`save`][] for an example).
    """
    return load_saved(path).result


def load_problem(path: str | os.PathLike):
    """The [`Problem`][] saved beside a result (`save(..., problem=...)`).

    **Returns:** a [`Problem`][], or None when none was saved.
    """
    arrays, meta = _read(path)
    return _problem(arrays, meta)


def _problem(arrays: dict, meta: dict):
    parts = {k[len("problem."):]: v for k, v in arrays.items() if k.startswith("problem.")}
    if not parts:
        return None
    import jax.numpy as jnp

    from ._problem import Problem

    kinds = meta.get("problem") or {}
    try:
        return Problem(**{k: jnp.asarray(v) for k, v in parts.items()},
                       structure_E=kinds.get("structure_E", "dense"), structure_U=kinds.get("structure_U", "dense"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"corrupt problem arrays ({e})") from None
