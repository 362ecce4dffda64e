"""GD on W at vocabulary scale, without ever materialising the N x M score matrix.

At N = M = 50,000 the scores S = E W^T U^T hold 2.5e9 numbers (20 GB in float64), and the
score-space Grams G_E, G_U as much again. The W-space gradient

    grad L(W) = U^T (softmax(S) - Y)^T diag(p) E = sum over chunks C of (R_C U)^T E_C,

with R_C = diag(p_C) (softmax(S_C) - Y_C), only needs the scores of one chunk of inputs at
a time. Each step streams over the inputs in chunks of `chunk` rows (one `lax.scan`), so
memory is O(chunk * M + (N + M) d) and the FLOPs are those of the two products per chunk,
4 N M d + 4 N d^2 per step. The observables (loss, accuracy, margins) of the current W come
out of the same pass at no extra matrix product.
"""

from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from . import _validate as v
from ._problem import default_dtype


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
    """

    steps: Int[Array, " T"]
    loss: Float[Array, " T"]
    accuracy: Float[Array, " T"]
    zero_one: Float[Array, " T"]
    min_margin: Float[Array, " T"]
    margins: Optional[Float[Array, "T N"]]
    W: Float[Array, "d d"]


def vocab_flops(N: int, M: int, d: int) -> int:
    """FLOPs of one [`gd_vocab`][] step: 4 N M d (scores and R U) + 4 N d^2 (E W^T, grad)."""
    return 4 * N * M * d + 4 * N * d * d


def _chunk_pass(W, Ec, pc, tc, U, with_obs: bool):
    """Gradient of one chunk of inputs, and optionally its observables."""
    c = Ec.shape[0]
    rows = jnp.arange(c)
    S = (Ec @ W.T) @ U.T  # (c, M): S[x, y] = u_y^T W e_x
    top = jnp.max(S, axis=1)
    Z = jnp.exp(S - top[:, None])
    z = jnp.sum(Z, axis=1)
    # R = diag(p) (softmax(S) - Y) with Y one-hot: a scatter, not a dense (c, M) Y.
    R = (Z * (pc / z)[:, None]).at[rows, tc].add(-pc)
    grad = (R @ U).T @ Ec
    if not with_obs:
        return grad, None
    s_t = S[rows, tc]
    loss = pc * (top + jnp.log(z) - s_t)
    other = jnp.max(jnp.where(jnp.arange(S.shape[1])[None, :] == tc[:, None], -jnp.inf, S), axis=1)
    right = jnp.argmax(S, axis=1) == tc
    return grad, (loss, right, s_t - other)


def _full_pass(W, E, U, p, targets, chunk: int, with_obs: bool):
    """The gradient at W (and the per-input observables), one `lax.scan` over input chunks."""
    n_chunks = E.shape[0] // chunk
    xs = (E.reshape(n_chunks, chunk, E.shape[1]), p.reshape(n_chunks, chunk), targets.reshape(n_chunks, chunk))

    def body(G, xs):
        g, o = _chunk_pass(W, *xs, U, with_obs)
        return G + g, o

    return jax.lax.scan(body, jnp.zeros_like(W), xs)


@eqx.filter_jit
def _run(W0, E, U, p, targets, lr, n_rows: int, save_every: int, chunk: int, N: int, save_margins: bool):
    def full_pass(W, with_obs):
        return _full_pass(W, E, U, p, targets, chunk, with_obs)

    def observe(outs):
        loss, right, margins = (a.reshape(-1)[:N] for a in outs)
        pp = p[:N]
        acc = jnp.where(right, pp, 0.0).sum()
        zo = jnp.where(right, 0.0, pp).sum()
        min_m = jnp.min(jnp.where(pp > 0, margins, jnp.inf))
        out = dict(loss=loss.sum(), accuracy=acc, zero_one=zo, min_margin=min_m)
        if save_margins:
            out["margins"] = margins
        return out

    def row(W, _):
        G, outs = full_pass(W, True)
        W = W - lr * G

        def plain(_, W):
            return W - lr * full_pass(W, False)[0]

        W = jax.lax.fori_loop(0, save_every - 1, plain, W)
        return W, observe(outs)

    W, rows = jax.lax.scan(row, W0, None, length=n_rows)
    _, last = full_pass(W, True)
    last = observe(last)
    rows = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]]), rows, last)
    return W, rows


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
) -> VocabTrajectory:
    """Full-batch GD on W for large vocabularies, streaming over chunks of inputs.

    W <- W - lr * U^T (softmax(E W^T U^T) - Y)^T diag(p) E, the same iterates as
    [`gd_weights`][] (and, mapped to scores, [`gd`][]), with memory O(chunk * M + (N + M) d)
    instead of O(N M): the score matrix is never formed.

    **Arguments:**

    - `E`: input embeddings, shape (N, d).
    - `U`: output embeddings, shape (M, d).
    - `p`: frequencies, shape (N,), summing to 1.
    - `targets`: f*(x), ints in [0, M), shape (N,).
    - `lr`: step size > 0.
    - `steps`: number of GD steps.
    - `W0`: initial weights (d, d); zero when omitted.
    - `chunk`: inputs per block (N is padded with p = 0 rows to a multiple). Peak memory
      is about 3 * chunk * M floats on top of E, U; larger chunks amortise loop overhead.
    - `save_every`: save a row every this many steps (must divide `steps`).
    - `save_margins`: keep every token's margin per row ((T, N) memory).
    - `dtype`: float64 by default; float32 halves memory and time.

    **Returns:** a [`VocabTrajectory`][]; rows at steps 0, save_every, ..., steps.
    """
    dtype = default_dtype() if dtype is None else jnp.dtype(dtype)
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
    t = np.asarray(targets) if v.is_concrete(targets) else None
    if t is not None and (not np.issubdtype(t.dtype, np.integer) or np.any(t < 0) or np.any(t >= M)):
        v.fail("targets", targets, f"f*(x) must be integers in [0, {M}) (M={M})")
    v.check_positive("lr", lr)
    steps = v.check_count("steps", steps, 0)
    chunk = v.check_count("chunk", chunk, 1)
    save_every = v.check_count("save_every", save_every, 1)
    if steps % save_every:
        v.fail("save_every", save_every, f"it must divide steps={steps}")
    if W0 is None:
        W0 = jnp.zeros((d, d), dtype)
    else:
        v.check_shape("W0", W0, (d, d))
        v.check_finite("W0", W0)
    chunk = min(chunk, N)
    pad = (-N) % chunk
    # Padded inputs have p = 0: they add nothing to the gradient, loss or accuracy.
    Ep = jnp.pad(jnp.asarray(E, dtype), ((0, pad), (0, 0)))
    pp = jnp.pad(jnp.asarray(p, dtype), (0, pad))
    tp = jnp.pad(jnp.asarray(targets, jnp.int32), (0, pad))
    W, rows = _run(jnp.asarray(W0, dtype), Ep, jnp.asarray(U, dtype), pp, tp, jnp.asarray(lr, dtype),
                   steps // save_every, save_every, chunk, N, save_margins)
    return VocabTrajectory(
        steps=jnp.arange(0, steps + 1, save_every),
        loss=rows["loss"],
        accuracy=rows["accuracy"],
        zero_one=rows["zero_one"],
        min_margin=rows["min_margin"],
        margins=rows.get("margins"),
        W=W,
    )
