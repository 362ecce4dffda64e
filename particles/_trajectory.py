"""`Trajectory`: the saved rows of a run (gd, sgd, flow, gd_weights), with a one-screen repr."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from . import _results
from ._io import jsonable
from ._status import Status

_ROWS = ("t", "loss", "zero_one", "accuracy", "margins", "final_scores", "status", "first_bad_step", "steps",
         "scores", "W")
_REQUIRED = {"t", "loss", "zero_one", "accuracy", "margins", "final_scores", "status", "first_bad_step"}
_SHOWN = ("lr", "batch_size", "optimizer", "rtol", "solver", "structure", "dtype")


def meta_json(metadata: dict) -> str:
    """Metadata as the canonical JSON text a result stores (hashable: a static field).

    **Returns:** a JSON string with sorted keys.
    """
    return json.dumps(jsonable(metadata), sort_keys=True)


@_results.register("trajectory")
class Trajectory(eqx.Module):
    """Saved observables of one run (or a batch of runs, when produced under `vmap`).

    **Fields** (T saved rows; a leading batch axis when batched):

    - `steps`: step index of each row (discrete integrators), shape (T,); `None` for `flow`.
    - `t`: time of each row, shape (T,): t for `flow`; for discrete runs, `steps` as floats
      (GD with step η follows the flow at time η·step).
    - `loss`, `zero_one`, `accuracy`: population quantities, shape (T,).
    - `margins`: m(x) for each input, shape (T, N).
    - `scores`: S at each row, shape (T, N, M), when asked for (`save_scores=True`).
    - `W`: the weights at each row, shape (T, d, d) (`gd_weights` with `save_weights=True`).
    - `final_scores`: S after the last step, shape (N, M) (for restarting a run).
    - `status`: a [`Status`][] code (0 ok, 1 non-finite, 2 max_steps, 3 solver failure).
    - `first_bad_step`: first step whose state is non-finite (discrete), else −1.
    - `info`: static metadata, a JSON object: the integrator and its settings, structure,
      dtype (read it as a dict with `metadata`; a loaded file adds `extra` and `versions`).

    `traj.ok` is True when every run succeeded; `traj.message` says what failed;
    `traj[k]` is member k of a batch.

    >>> import particles as pt
    >>> traj = pt.gd(pt.orthogonal([0.5, 0.5]), lr=1.0, steps=4)
    >>> traj.margins.shape, traj.ok
    ((5, 2), True)
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
    info: str = eqx.field(static=True, default="{}")

    # ------------------------------------------------------------------ views
    @property
    def metadata(self) -> dict:
        """The run's settings (integrator, lr, seed, …) as a dict (a fresh copy)."""
        return json.loads(self.info)

    @property
    def integrator(self) -> str:
        return self.metadata.get("integrator", "?")

    @property
    def batch_shape(self) -> tuple:
        return tuple(np.shape(self.loss)[:-1])

    @property
    def ok(self) -> bool:
        return bool(np.all(np.asarray(self.status) == Status.OK))

    @property
    def message(self) -> str:
        """What went wrong, in words ("ok" when nothing did), with what to change."""
        status = np.asarray(self.status)
        if np.all(status == Status.OK):
            return "ok"
        parts = []
        for code in sorted(set(status.ravel().tolist()) - {Status.OK}):
            what = Status(code).describe()
            if code == Status.NON_FINITE and self.steps is not None:
                bad = np.asarray(self.first_bad_step)
                if status.ndim == 0:
                    what += f" from step {int(bad)}" if bad >= 0 else ""
                else:
                    what += f" (first bad steps {np.unique(bad[bad >= 0])[:5].tolist()})"
            if status.ndim > 0:
                what += f" in {int(np.sum(status == code))} of {status.size} runs"
            hint = (self.metadata.get("hints") or {}).get(Status(code).name)
            parts.append(what + (f": {hint}" if hint else ""))
        return "; ".join(parts)

    def __getitem__(self, index) -> "Trajectory":
        """Member `index` of a batched trajectory (e.g. one learning rate of a vmapped run)."""
        if not self.batch_shape:
            raise IndexError("this Trajectory is not batched")
        member = jax.tree_util.tree_map(lambda a: a[index], self)
        info = self.metadata
        if isinstance(info.get("lr"), (tuple, list)) and isinstance(index, (int, np.integer)):
            info["lr"] = info["lr"][index]  # the member's own rate, so that it can be resumed
            if isinstance(info.get("settings"), dict):
                info["settings"] = dict(info["settings"], lr=info["lr"])
        return dataclasses.replace(member, info=meta_json(info))

    def __repr__(self) -> str:
        m = np.asarray(self.margins)
        members = int(np.prod(self.batch_shape)) if self.batch_shape else 0
        lines = [f"Trajectory({self.integrator}"]
        if members:
            lines.append(f"  batch      {self.batch_shape}: ranges below are min .. max over the {members} members")
        T, N = m.shape[-2], m.shape[-1]
        M = np.shape(self.final_scores)[-1]
        if self.steps is not None:
            st = np.asarray(self.steps)
            lines.append(f"  rows       {T} (steps {int(st.min())} .. {int(st.max())}); N={N}, M={M}")
        else:
            tt = np.asarray(self.t)
            lines.append(f"  rows       {T} (t {tt.min():.4g} .. {tt.max():.4g}); N={N}, M={M}")

        def span(name, a):
            a = np.asarray(a)
            first, last = a[..., 0], a[..., -1]
            if not members:
                return f"  {name:<10} {float(first):.6g} -> {float(last):.6g}"
            return (f"  {name:<10} {np.nanmin(first):.4g} .. {np.nanmax(first):.4g} -> "
                    f"{np.nanmin(last):.4g} .. {np.nanmax(last):.4g}")

        lines.append(span("loss", self.loss))
        lines.append(span("accuracy", self.accuracy))
        mfirst, mlast = m[..., 0, :], m[..., -1, :]
        if N <= 6 and not members:
            fmt = lambda a: "(" + ", ".join(f"{x:.4g}" for x in a) + ")"  # noqa: E731
            lines.append(f"  margins    {fmt(mfirst)} -> {fmt(mlast)}")
        else:
            lines.append(f"  margins    min {np.nanmin(mfirst):.4g} -> {np.nanmin(mlast):.4g}, "
                         f"max {np.nanmax(mfirst):.4g} -> {np.nanmax(mlast):.4g} (over tokens"
                         + (" and members)" if members else ")"))
        meta = self.metadata
        shown = [f"{k}={meta[k]}" for k in _SHOWN if meta.get(k) is not None]
        if "num_steps" in meta:
            shown.append(f"solver steps={meta['num_steps']}")
        if shown:
            lines.append("  settings   " + ", ".join(shown))
        saved = [n for n in ("scores", "W") if getattr(self, n) is not None]
        if saved:
            lines.append("  saved      " + ", ".join(f"{n} {tuple(np.shape(getattr(self, n)))}" for n in saved))
        lines.append(f"  status     {self.message}")
        return "\n".join(lines) + "\n)"

    # --------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike, *, problem=None, extra: Optional[dict] = None) -> None:
        """Write the trajectory to one `.npz` file, atomically (see [`particles.save`][]).

        The metadata holds `info` (the integrator's settings, the SGD seed), package versions
        and anything in `extra`; with `problem`, its arrays are stored too (read them back
        with [`Trajectory.load_problem`][]). No pickles: loading runs no code.
        """
        _results.save(path, self, problem=problem, extra=extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Trajectory":
        """Read a file written by `save`; `metadata` gains the saved `extra` and `versions`.

        Raises `ValueError` for corrupt or foreign files.
        """
        saved = _results.load_saved(path, "trajectory")
        info = dict(saved.metadata, extra=saved.extra, versions=saved.versions)
        return dataclasses.replace(saved.result, info=meta_json(info))

    @staticmethod
    def load_problem(path: str | os.PathLike):
        """The [`Problem`][] stored by `save(path, problem=...)`, or None if none was."""
        return _results.load_problem(path)

    # ----------------------------------------------------- result-format hooks
    def _arrays(self) -> dict:
        return {name: getattr(self, name) for name in _ROWS}

    def _metadata(self) -> dict:
        return self.metadata

    @classmethod
    def _from_saved(cls, arrays: dict, metadata: dict) -> "Trajectory":
        missing = _REQUIRED - set(arrays)
        if missing:
            raise ValueError(f"missing arrays {sorted(missing)}")
        unknown = sorted(set(arrays) - set(_ROWS))
        if unknown:
            raise ValueError(f"unexpected arrays {unknown} for a trajectory")
        return cls(**{k: jnp.asarray(a) for k, a in arrays.items()}, info=meta_json(metadata))


@_results.register("runs")
class Runs(dict):
    """Several named trajectories saved in one file (e.g. `simulate`'s GD rates and flow).

    A plain dict name -> [`Trajectory`][]; `particles.save(path, Runs(...), problem=...)`
    writes it, `particles.load(path)` returns it.

    >>> import particles as pt
    >>> problem = pt.orthogonal([0.5, 0.5])
    >>> runs = Runs(gd=pt.gd(problem, 1.0, 3), flow=pt.flow(problem, 3.0))
    >>> sorted(runs)
    ['flow', 'gd']
    """

    def _arrays(self) -> dict:
        out = {}
        for name, traj in self.items():
            if "/" in name:
                raise ValueError(f"run name {name!r} is not allowed: no '/'.")
            out.update({f"{name}/{k}": a for k, a in traj._arrays().items() if a is not None})
        return out

    def _metadata(self) -> dict:
        return {"runs": {name: traj.metadata for name, traj in self.items()}}

    @classmethod
    def _from_saved(cls, arrays: dict, metadata: dict) -> "Runs":
        out = cls()
        for name, meta in metadata["runs"].items():
            own = {k.split("/", 1)[1]: a for k, a in arrays.items() if k.split("/", 1)[0] == name}
            out[name] = Trajectory._from_saved(own, meta)
        return out
