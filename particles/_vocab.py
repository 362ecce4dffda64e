"""GD on W at vocabulary scale, without ever materialising the N x M score matrix, on one
device or sharded over many.

At N = M = 50,000 the scores S = E W^T U^T hold 2.5e9 numbers (20 GB in float64), and the
score-space Grams G_E, G_U as much again. The W-space gradient

    grad L(W) = U^T (softmax(S) - Y)^T diag(p) E = sum over chunks C of (R_C U)^T E_C,

with R_C = diag(p_C) (softmax(S_C) - Y_C), only needs the scores of one chunk of inputs at
a time. Each step streams over the inputs in chunks of `chunk` rows (one `lax.scan`), so
memory is O(chunk * M + (N + M) d) and the FLOPs are those of the two products per chunk,
4 N M d + 4 N d^2 per step. The observables (loss, accuracy, margins) of the current W come
out of the same pass at no extra matrix product.

Chunks are independent given W, so the inputs' rows are sharded over devices and the d x d
partial gradients summed with one all-reduce per step; when U itself is too large for one
device its rows are sharded too (see `particles._vocab_kernel`).
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from . import _results
from . import _validate as v
from . import _vocab_kernel as K
from ._io import jsonable
from ._problem import default_dtype
from ._vocab_plan import _replicated, place as place, vocab_plan as vocab_plan


_ROWS = ("steps", "loss", "accuracy", "zero_one", "min_margin", "margins", "W")


@_results.register("vocab_trajectory")
class VocabTrajectory(eqx.Module):
    """Summaries of a [`gd_vocab`][] run, one row per saved step.

    **Fields:**

    - `steps`: the saved steps, shape (T,), from 0 to `steps`.
    - `loss`: population cross-entropy, shape (T,).
    - `accuracy`: sum_x p(x) 1{argmax_y S[x, y] = f*(x)} (ties to the first index), (T,).
    - `zero_one`: 1 - accuracy, computed as its own sum, (T,).
    - `min_margin`: min_x m(x) over inputs with p(x) > 0, (T,).
    - `margins`: m(x) for every input, (T, N); `None` when `save_margins=False`.
    - `W`: the final weights, (d, d).
    - `info`: static metadata, a JSON object (lr, steps, chunk, devices, u_shards, dtypes);
      read it as a dict with `metadata`.

    Save and load it with [`particles.save`][] / [`particles.load`][] (one `.npz`, no pickles).
    """

    steps: Int[Array, " T"]
    loss: Float[Array, " T"]
    accuracy: Float[Array, " T"]
    zero_one: Float[Array, " T"]
    min_margin: Float[Array, " T"]
    margins: Optional[Float[Array, "T N"]]
    W: Float[Array, "d d"]
    info: str = eqx.field(static=True, default="{}")

    @property
    def metadata(self) -> dict:
        """The run's settings as a dict (a fresh copy)."""
        return json.loads(self.info)

    def _arrays(self) -> dict:
        return {name: getattr(self, name) for name in _ROWS}

    def _metadata(self) -> dict:
        return self.metadata

    @classmethod
    def _from_saved(cls, arrays: dict, metadata: dict) -> "VocabTrajectory":
        missing = sorted(set(_ROWS) - {"margins"} - set(arrays))
        if missing:
            raise ValueError(f"missing arrays {missing}")
        unknown = sorted(set(arrays) - set(_ROWS))
        if unknown:
            raise ValueError(f"unexpected arrays {unknown} for a vocab_trajectory")
        fields = {k: jnp.asarray(arrays[k]) if k in arrays else None for k in _ROWS}
        return cls(**fields, info=json.dumps(jsonable(metadata), sort_keys=True))


def vocab_flops(N: int, M: int, d: int) -> int:
    """FLOPs of one [`gd_vocab`][] step: 4 N M d (scores and R U) + 4 N d^2 (E W^T, grad).

    >>> vocab_flops(3, 5, 2)
    168
    """
    return 4 * N * M * d + 4 * N * d * d


_run_jit = jax.jit(K.run, static_argnames=("mesh", "n_rows", "save_every", "chunk", "N", "M", "split", "save_margins"))


def _float_dtype(name, value):
    dt = jnp.dtype(value)
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        v.fail(name, str(dt), "use float32 or float64")
    return dt


def gd_vocab(
    E: Float[ArrayLike, "N d"],
    U: Float[ArrayLike, "M d"],
    p: Float[ArrayLike, " N"],
    targets: Int[ArrayLike, " N"],
    lr: float | Float[ArrayLike, ""],
    steps: int,
    *,
    W0: Optional[Float[ArrayLike, "d d"]] = None,
    chunk: int = 256,
    save_every: int = 1,
    save_margins: bool = True,
    dtype=None,
    compute_dtype=None,
    devices: Optional[int | Sequence[jax.Device]] = None,
    u_shards: Optional[int] = None,
    memory_budget: Optional[float] = None,
) -> VocabTrajectory:
    """Full-batch GD on W for large vocabularies, streaming over chunks of inputs, sharded
    over devices.

    W <- W - lr * U^T (softmax(E W^T U^T) - Y)^T diag(p) E, the same iterates as
    [`gd_weights`][] (and, mapped to scores, [`gd`][]), with memory O(chunk * M + (N + M) d)
    instead of O(N M): the score matrix is never formed. The residual is the project's
    cancellation-free `target_residual` and the loss the formula of `losses`
    (`particles._vocab_kernel.target_losses`), so a loss of 1e-18 keeps its digits.

    **Arguments:**

    - `E`: input embeddings, shape (N, d).
    - `U`: output embeddings, shape (M, d).
    - `p`: frequencies, shape (N,), summing to 1.
    - `targets`: f*(x), ints in [0, M), shape (N,).
    - `lr`: step size > 0.
    - `steps`: number of GD steps.
    - `W0`: initial weights (d, d); zero when omitted.
    - `chunk`: inputs per block on each device (rows are padded with p = 0 rows, which add
      nothing, to a multiple of devices x chunk). The working set is two chunk x M / u_shards
      blocks per device; on CPU chunks below ~100 rows run the products far below peak.
    - `save_every`: save a row every this many steps (must divide `steps`).
    - `save_margins`: keep every token's margin per row ((T, N) memory).
    - `dtype`: dtype of W, its accumulation and the saved rows; float64 by default.
    - `compute_dtype`: dtype of E, U, the scores and the softmax; `dtype` by default.
      `dtype=float64, compute_dtype=float32` is mixed precision: float32 products and
      softmax, each chunk's gradient accumulated into a float64 W (see BENCHMARKS.md for
      how much of float32's drift it removes).
    - `devices`: the devices to shard over: None (all of `jax.devices()`, across processes
      under `jax.distributed`), an int (the first that many) or a list of devices.
    - `u_shards`: split U's rows over this many devices (a divisor of the device count; the
      inputs' rows over the rest). None chooses the smallest that fits `memory_budget`.
    - `memory_budget`: bytes per device for that choice; by default 80% of an accelerator's
      memory, or half the RAM shared by the host's devices. Under `jax.distributed` every
      process must reach the same layout: pass `u_shards` when hosts differ.

    Results do not depend on the layout beyond float64 round-off (the gradient's sum runs in
    another order).

    **Returns:** a [`VocabTrajectory`][]; rows at steps 0, save_every, ..., steps.

    >>> import numpy as np
    >>> E = U = np.eye(4)
    >>> traj = gd_vocab(E, U, np.full(4, 0.25), np.arange(4), lr=1.0, steps=2, devices=1)
    >>> traj.loss.shape, bool(traj.loss[-1] < traj.loss[0])
    ((3,), True)
    """
    dtype = _float_dtype("dtype", default_dtype() if dtype is None else dtype)
    compute_dtype = dtype if compute_dtype is None else _float_dtype("compute_dtype", compute_dtype)
    if compute_dtype.itemsize > dtype.itemsize:
        v.fail("compute_dtype", str(compute_dtype), f"it cannot be wider than dtype={dtype}")
    if np.ndim(E) != 2:
        raise ValueError(f"E has shape {np.shape(E)}; expected a matrix (N, d).")
    N, d = np.shape(E)
    if np.ndim(U) != 2:
        raise ValueError(f"U has shape {np.shape(U)}; expected a matrix (M, d).")
    M = np.shape(U)[0]
    v.check_shape("U", U, (M, d))
    v.check_finite("E", E)
    v.check_finite("U", U)
    v.check_probability("p", p)
    v.check_shape("p", p, (N,))
    v.check_shape("targets", targets, (N,))
    t = np.asarray(targets)
    if not np.issubdtype(t.dtype, np.integer) or np.any(t < 0) or np.any(t >= M):
        v.fail("targets", targets, f"f*(x) must be integers in [0, {M}) (M={M})")
    v.check_positive("lr", lr)
    steps = v.check_count("steps", steps, 0)
    chunk = v.check_count("chunk", chunk, 1)
    save_every = v.check_count("save_every", save_every, 1)
    if steps % save_every:
        v.fail("save_every", save_every, f"it must divide steps={steps}")
    if W0 is None:
        W0 = np.zeros((d, d), dtype)
    else:
        v.check_shape("W0", W0, (d, d))
        v.check_finite("W0", W0)
    n_rows = steps // save_every
    plan = vocab_plan(N, M, d, devices=devices, u_shards=u_shards, chunk=chunk, memory_budget=memory_budget,
                      saved_rows=n_rows + 1, save_margins=save_margins, dtype=dtype, compute_dtype=compute_dtype)
    Ep, Up, pp, tp = place(plan, E, U, p, t, dtype, compute_dtype)
    W, rows = _run_jit(_replicated(plan, np.asarray(W0, dtype)), Ep, Up, pp, tp,
                       _replicated(plan, np.asarray(lr, dtype)), mesh=plan.mesh, n_rows=n_rows,
                       save_every=save_every, chunk=plan.chunk, N=N, M=M, split=plan.split,
                       save_margins=save_margins)
    info = dict(lr=float(np.asarray(lr)), steps=steps, save_every=save_every, chunk=plan.chunk,
                devices=plan.row_shards * plan.u_shards, u_shards=plan.u_shards, dtype=str(dtype),
                compute_dtype=str(compute_dtype), N=N, M=M, d=d)
    return VocabTrajectory(
        steps=jnp.arange(0, steps + 1, save_every),
        loss=rows["loss"],
        accuracy=rows["accuracy"],
        zero_one=rows["zero_one"],
        min_margin=rows["min_margin"],
        margins=rows.get("margins"),
        W=W,
        info=json.dumps(jsonable(info), sort_keys=True),
    )
