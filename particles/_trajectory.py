"""`Trajectory`: what an integrator returns, with a one-screen repr and safe save/load."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from ._io import atomic_savez, jsonable, versions

FORMAT = "particles.trajectory"
FORMAT_VERSION = 1
_PROBLEM_ARRAYS = ("p", "Y", "G_E", "G_U", "S0", "E", "U", "W0")

STATUS = {0: "ok", 1: "non-finite values", 2: "max_steps reached", 3: "solver failure"}


class Trajectory(eqx.Module):
    """Saved observables of one run (or a batch of runs, when produced under `vmap`).

    **Fields** (T saved rows; a leading batch axis when batched):

    - `steps`: step index of each row (discrete integrators), shape (T,); `None` for `flow`.
    - `t`: time of each row, shape (T,): t for `flow`; for discrete runs, `steps` as floats.
    - `loss`, `zero_one`, `accuracy`: population quantities, shape (T,).
    - `margins`: m(x) for each input, shape (T, N).
    - `scores`: S at each row, shape (T, N, M), when asked for (`save_scores=True`).
    - `W`: the weights at each row, shape (T, d, d) (`gd_weights` with `save_weights=True`).
    - `final_scores`: S after the last step, shape (N, M) (for restarting a run).
    - `status`: 0 ok, 1 non-finite values, 2 max_steps reached (flow), 3 solver failure.
    - `first_bad_step`: first step whose state is non-finite (discrete), else -1.
    - `info`: static metadata: integrator, settings, structure, dtype.

    `Trajectory.ok` is True when every run succeeded; `Trajectory.message` says what failed.
    """

    t: Float[Array, "*B T"]
    loss: Float[Array, "*B T"]
    zero_one: Float[Array, "*B T"]
    accuracy: Float[Array, "*B T"]
    margins: Float[Array, "*B T N"]
    final_scores: Float[Array, "*B N M"]
    status: Int[Array, "*B"]
    first_bad_step: Int[Array, "*B"]
    steps: Optional[Int[Array, "*B T"]] = None
    scores: Optional[Float[Array, "*B T N M"]] = None
    W: Optional[Float[Array, "*B T d d"]] = None
    info: tuple = eqx.field(static=True, default=())

    # ------------------------------------------------------------------ views
    @property
    def metadata(self) -> dict:
        return dict(self.info)

    @property
    def integrator(self) -> str:
        return self.metadata.get("integrator", "?")

    @property
    def batch_shape(self) -> tuple:
        return tuple(np.shape(self.loss)[:-1])

    @property
    def ok(self) -> bool:
        return bool(np.all(np.asarray(self.status) == 0))

    @property
    def message(self) -> str:
        status = np.asarray(self.status)
        if np.all(status == 0):
            return "ok"
        parts = []
        for code in sorted(set(status.ravel().tolist()) - {0}):
            where = np.argwhere(status == code)
            what = STATUS.get(code, f"status {code}")
            if code == 1:
                bad = np.asarray(self.first_bad_step)
                if status.ndim == 0:
                    what += f" from step {int(bad)}" if bad >= 0 else ""
                else:
                    what += f" in {len(where)} of {status.size} runs (first bad steps {np.unique(bad[bad >= 0])[:5].tolist()})"
            elif status.ndim > 0:
                what += f" in {len(where)} of {status.size} runs"
            parts.append(what)
        return "; ".join(parts)

    def __getitem__(self, index) -> "Trajectory":
        """Member `index` of a batched trajectory (e.g. one learning rate of a vmapped run)."""
        if not self.batch_shape:
            raise IndexError("this Trajectory is not batched")
        member = jax.tree_util.tree_map(lambda a: a[index], self)
        info = dict(self.info)
        if isinstance(info.get("lr"), tuple) and isinstance(index, (int, np.integer)):
            info["lr"] = info["lr"][index]  # the member's own rate, so that it can be resumed
        return dataclasses.replace(member, info=tuple(info.items()))

    def __repr__(self) -> str:
        m = np.asarray(self.margins)
        lines = [f"Trajectory({self.integrator}"]
        if self.batch_shape:
            lines.append(f"  batch      {self.batch_shape}")
        T, N = m.shape[-2], m.shape[-1]
        M = np.shape(self.final_scores)[-1]
        tt = np.asarray(self.t)
        if self.steps is not None:
            st = np.asarray(self.steps)
            lines.append(f"  rows       {T} (steps {int(st.min())} .. {int(st.max())}); N={N}, M={M}")
        else:
            lines.append(f"  rows       {T} (t {tt.min():.4g} .. {tt.max():.4g}); N={N}, M={M}")

        def span(name, a):
            a = np.asarray(a)
            first, last = a[..., 0], a[..., -1]
            if first.size == 1:
                return f"  {name:<10} {float(first):.6g} -> {float(last):.6g}"
            return f"  {name:<10} [{np.nanmin(first):.4g}, {np.nanmax(first):.4g}] -> [{np.nanmin(last):.4g}, {np.nanmax(last):.4g}]"

        lines.append(span("loss", self.loss))
        lines.append(span("accuracy", self.accuracy))
        mfirst, mlast = m[..., 0, :], m[..., -1, :]
        if N <= 6 and not self.batch_shape:
            fmt = lambda a: "(" + ", ".join(f"{x:.4g}" for x in a) + ")"
            lines.append(f"  margins    {fmt(mfirst)} -> {fmt(mlast)}")
        else:
            lines.append(f"  margins    min {np.nanmin(mfirst):.4g} -> {np.nanmin(mlast):.4g}, max {np.nanmax(mfirst):.4g} -> {np.nanmax(mlast):.4g}")
        meta = self.metadata
        extra = [f"{k}={meta[k]}" for k in ("lr", "batch_size", "rtol", "solver", "structure", "dtype") if k in meta]
        if "num_steps" in meta:
            extra.append(f"solver steps={meta['num_steps']}")
        if extra:
            lines.append("  settings   " + ", ".join(str(e) for e in extra))
        saved = [n for n in ("scores", "W") if getattr(self, n) is not None]
        if saved:
            lines.append("  saved      " + ", ".join(f"{n} {tuple(np.shape(getattr(self, n)))}" for n in saved))
        lines.append(f"  status     {self.message}")
        return "\n".join(lines) + "\n)"

    # --------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike, *, problem=None, extra: Optional[dict] = None) -> None:
        """Write arrays and JSON metadata to one `.npz` file, atomically (temp file, rename).

        The metadata holds `info` (the integrator's settings, the SGD seed), package versions
        and anything in `extra`; with `problem`, its arrays are stored too (read them back with
        [`Trajectory.load_problem`][]). No pickles: loading runs no code.
        """
        arrays = {}
        problem_meta = None
        if problem is not None:
            for name in _PROBLEM_ARRAYS:
                value = getattr(problem, name)
                if value is not None:
                    arrays[f"problem.{name}"] = np.asarray(value)
            problem_meta = dict(structure_E=problem.structure_E, structure_U=problem.structure_U)
        for name in ("t", "loss", "zero_one", "accuracy", "margins", "final_scores", "status",
                     "first_bad_step", "steps", "scores", "W"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = np.asarray(value)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "info": jsonable(self.metadata),
            "versions": versions(),
            "extra": jsonable(extra or {}),
            "problem": problem_meta,
        }
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Trajectory":
        """Read a file written by `save`. Raises `ValueError` for corrupt or foreign files."""
        arrays = _read(path)
        if "__meta__" not in arrays:
            raise ValueError(f"{path}: not a particles trajectory (no metadata)")
        try:
            meta = json.loads(arrays.pop("__meta__").tobytes().decode())
        except Exception as e:
            raise ValueError(f"{path}: corrupt metadata ({e})") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: trajectory format version {meta.get('format_version')} cannot be read by "
                f"this particles (reads version {FORMAT_VERSION})"
            )
        missing = {"t", "loss", "zero_one", "accuracy", "margins", "final_scores", "status", "first_bad_step"} - set(arrays)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)}")
        if not isinstance(meta.get("info"), dict):
            raise ValueError(f"{path}: corrupt metadata (no 'info' mapping)")
        info = tuple((k, _hashable(v)) for k, v in meta["info"].items())
        known = {f.name for f in dataclasses.fields(cls)} - {"info"}
        fields = {k: a for k, a in arrays.items() if not k.startswith("problem.")}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"{path}: unexpected arrays {unknown} for a trajectory")
        try:
            return cls(**{k: jnp.asarray(a) for k, a in fields.items()}, info=info)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a valid trajectory ({e})") from None

    @staticmethod
    def load_problem(path: str | os.PathLike):
        """The [`Problem`][] stored by `save(path, problem=...)`, or None if none was."""
        from ._problem import Problem

        data = _read(path)
        arrays = {k[len("problem."):]: v for k, v in data.items() if k.startswith("problem.")}
        try:
            meta = json.loads(data["__meta__"].tobytes().decode()) if "__meta__" in data else {}
        except Exception as e:
            raise ValueError(f"{path}: corrupt metadata ({e})") from None
        if not arrays:
            return None
        kinds = meta.get("problem") or {}
        return Problem(**{k: jnp.asarray(v) for k, v in arrays.items()},
                       structure_E=kinds.get("structure_E", "dense"), structure_U=kinds.get("structure_U", "dense"))


# ------------------------------------------------------------------- helpers
def _read(path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile, format or pickle errors: all mean "not a good file"
        raise ValueError(f"{path}: not a readable trajectory file ({type(e).__name__}: {e})") from None


def _hashable(x: Any):
    if isinstance(x, list):
        return tuple(_hashable(v) for v in x)
    if isinstance(x, dict):
        return tuple((k, _hashable(v)) for k, v in x.items())
    return x
