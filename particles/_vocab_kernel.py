"""The per-chunk mathematics of [`gd_vocab`][] and its sharded driver.

Layout on a mesh of k = k_r * k_c devices, axes ("rows", "cols"):

- the inputs' rows (E, p, targets) are split into k_r blocks over "rows";
- U's rows (the classes) are split into k_c blocks over "cols" (k_c = 1: U replicated);
- W is replicated.

Each device streams its rows in chunks; a chunk's scores against the device's block of
classes are S_C = (E_C W^T) U_b^T. With k_c = 1 the chunk is complete and the residual is
[`target_residual`][particles._dynamics.target_residual] itself. With k_c > 1 the softmax of a
row spans devices, so its max and normaliser are reduced over "cols" (one `pmax` and one
`psum` of a few numbers per row). The d x d partial gradients are summed over every device
with one all-reduce per step; observables (loss, accuracy, margins) are reduced only on
saved rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from ._dynamics import target_residual

ROWS, COLS = "rows", "cols"


def target_losses(S, targets):
    """Per-input cross-entropy for integer targets: `losses(S, one_hot(targets))` without the
    dense one-hot block.

    (S_top - S_t) + log1p(sum_{y != top} e^{S_y - S_top}), top = argmax_y S (first index):
    the formula and operation order of [`particles._observables.losses`][] with one-hot rows
    (there the gap term is sum_y Y_y (S_top - S_y) = S_top - S_t exactly), so both agree to
    the last bit and a loss of 1e-18 keeps full relative precision.

    **Arguments:**

    - `S`: scores, shape (..., c, M).
    - `targets`: f*(x), integers in [0, M), shape (..., c).

    **Returns:** the losses, shape (..., c).

    >>> import jax.numpy as jnp
    >>> float(target_losses(jnp.array([[40.0, 0.0]]), jnp.array([0]))[0])  # doctest: +ELLIPSIS
    4.24...e-18
    """
    top = jnp.max(S, axis=-1, keepdims=True)
    is_top = jax.nn.one_hot(jnp.argmax(S, axis=-1), S.shape[-1], dtype=bool)
    rest = jnp.sum(jnp.where(is_top, 0.0, jnp.exp(S - top)), axis=-1)
    s_t = jnp.take_along_axis(S, targets[..., None], axis=-1)[..., 0]
    return (top[..., 0] - s_t) + jnp.log1p(rest)


def _margins_right(S, targets):
    is_t = jnp.arange(S.shape[-1])[None, :] == targets[:, None]
    s_t = jnp.take_along_axis(S, targets[:, None], axis=-1)[:, 0]
    other = jnp.max(jnp.where(is_t, -jnp.inf, S), axis=-1)
    return s_t - other, jnp.argmax(S, axis=-1) == targets


def chunk_pass(W, Ec, pc, tc, U, with_obs: bool):
    """The gradient sum_{x in C} p_x U^T r_x e_x^T of one chunk whose classes are all local,
    and optionally its observables (p_x * loss_x, correct_x, margin_x)."""
    S = (Ec @ W.T) @ U.T  # (c, M): S[x, y] = u_y^T W e_x
    R = pc[:, None] * target_residual(S, tc)
    grad = (R @ U).T @ Ec
    if not with_obs:
        return grad, None
    margin, right = _margins_right(S, tc)
    return grad, (pc * target_losses(S, tc), right, margin)


def split_chunk_pass(W, Ec, pc, tc, Ub, col0, M: int, mask: bool, with_obs: bool):
    """[`chunk_pass`][] when this device holds the classes [col0, col0 + Mb) of M: the softmax's
    max and normaliser (and, on observed passes, the first argmax, S_t and the best competitor)
    are reduced over "cols". Padded classes (index >= M) score -inf and weigh nothing.

    The target entry is minus the sum of the others, as in `target_residual`, computed as
    (sum_{y != t} e^{S_y - top}) / z: one reduction of both sums instead of two in turn.
    """
    Mb = Ub.shape[0]
    S = (Ec @ W.T) @ Ub.T  # (c, Mb)
    cols = col0 + jnp.arange(Mb)
    if mask:  # U was padded to a multiple of the "cols" devices
        S = jnp.where(cols[None, :] < M, S, -jnp.inf)
    is_t = cols[None, :] == tc[:, None]
    if with_obs:
        both = lax.pmax(jnp.stack([jnp.max(S, axis=1), jnp.max(jnp.where(is_t, -jnp.inf, S), axis=1)]), COLS)
        top, other = both[0], both[1]
    else:
        top = lax.pmax(jnp.max(S, axis=1), COLS)
    Z = jnp.exp(S - top[:, None])
    sums = [jnp.sum(Z, axis=1), jnp.sum(jnp.where(is_t, 0.0, Z), axis=1)]
    if with_obs:
        # First global argmax (ties to the lowest class index, as jnp.argmax).
        first = lax.pmin(jnp.min(jnp.where(S == top[:, None], cols[None, :], M), axis=1), COLS)
        sums += [jnp.sum(jnp.where(cols[None, :] == first[:, None], 0.0, Z), axis=1),
                 jnp.sum(jnp.where(is_t, S, 0.0), axis=1)]  # exactly S_t: one shard adds it, the rest add 0
    sums = lax.psum(jnp.stack(sums), COLS)
    z, z_others = sums[0], sums[1]
    R = jnp.where(is_t, -(z_others / z)[:, None], Z / z[:, None])
    grad = ((pc[:, None] * R) @ Ub).T @ Ec
    if not with_obs:
        return grad, None
    rest, s_t = sums[2], sums[3]
    loss = (top - s_t) + jnp.log1p(rest)
    return grad, (pc * loss, first == tc, s_t - other)


def full_pass(W, E, U, p, targets, chunk: int, with_obs: bool, *, split: bool = False, M: int = 0,
              compute_dtype=None, vary=()):
    """The gradient at W over local rows (and per-input observables), one `lax.scan` over chunks.

    Rows are a multiple of `chunk`. W is cast once to `compute_dtype` (the dtype of E and U);
    each chunk's gradient is accumulated in W's dtype (float64 accumulation of float32 chunks
    in mixed precision). Under `shard_map`, `vary` names the mesh axes the partial sum varies
    over; the caller reduces it.
    """
    cdt = E.dtype if compute_dtype is None else compute_dtype
    Wc = W.astype(cdt)
    d = E.shape[1]
    xs = (E.reshape(-1, chunk, d), p.astype(cdt).reshape(-1, chunk), targets.reshape(-1, chunk))
    col0 = lax.axis_index(COLS) * U.shape[0] if split else 0
    mask = split and U.shape[0] * lax.axis_size(COLS) != M

    def body(G, x):
        if split:
            g, o = split_chunk_pass(Wc, *x, U, col0, M, mask, with_obs)
        else:
            g, o = chunk_pass(Wc, *x, U, with_obs)
        return G + g.astype(W.dtype), o

    G0 = jnp.zeros_like(W)
    if vary:
        G0 = lax.pcast(G0, vary, to="varying")
    return lax.scan(body, G0, xs)


def run(W0, E, U, p, targets, lr, *, mesh, n_rows: int, save_every: int, chunk: int, N: int, M: int,
        split: bool, save_margins: bool):
    """GD rows under `shard_map` on `mesh` (to be called inside `jit`). E, p, targets are padded to
    a multiple of k_r * chunk rows; with `split`, U to a multiple of k_c rows."""
    vary = (ROWS, COLS) if split else (ROWS,)

    def local(W0, E, U, p, targets, lr):
        def grad_pass(W, with_obs):
            G, outs = full_pass(W, E, U, p, targets, chunk, with_obs, split=split, M=M, vary=vary)
            return lax.psum(G, vary), outs  # the one all-reduce of a step: d^2 numbers

        def observe(outs):
            wl, right, margin = (a.reshape(-1) for a in outs)
            pw = p.astype(W0.dtype)
            stats = jnp.stack([wl.astype(W0.dtype).sum(), jnp.where(right, pw, 0.0).sum(),
                               jnp.where(right, 0.0, pw).sum()])
            stats = lax.psum(stats, ROWS)
            min_m = lax.pmin(jnp.min(jnp.where(p > 0, margin, jnp.inf)), ROWS).astype(W0.dtype)
            out = dict(loss=stats[0], accuracy=stats[1], zero_one=stats[2], min_margin=min_m)
            if save_margins:
                out["margins"] = margin.astype(W0.dtype)
            return out

        def row(W, _):
            G, outs = grad_pass(W, True)
            W = W - lr * G
            W = lax.fori_loop(0, save_every - 1, lambda _, W: W - lr * grad_pass(W, False)[0], W)
            return W, observe(outs)

        W, rows = lax.scan(row, W0, None, length=n_rows)
        last = observe(grad_pass(W, True)[1])
        rows = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]]), rows, last)
        return W, rows

    row_specs = dict(loss=P(), accuracy=P(), zero_one=P(), min_margin=P())
    if save_margins:
        row_specs["margins"] = P(None, ROWS)
    W, rows = jax.shard_map(
        local, mesh=mesh,
        in_specs=(P(), P(ROWS), P(COLS) if split else P(), P(ROWS), P(ROWS), P()),
        out_specs=(P(), row_specs),
    )(W0, E, U, p, targets, lr)
    if save_margins:
        rows["margins"] = rows["margins"][:, :N]
    return W, rows


def step(W, E, U, p, targets, lr, *, mesh, chunk: int, M: int, split: bool):
    """One plain GD step W - lr * grad L(W) under `shard_map` (for benchmarks; inside `jit`)."""
    vary = (ROWS, COLS) if split else (ROWS,)

    def local(W, E, U, p, targets, lr):
        G, _ = full_pass(W, E, U, p, targets, chunk, False, split=split, M=M, vary=vary)
        return W - lr * lax.psum(G, vary)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(ROWS), P(COLS) if split else P(), P(ROWS), P(ROWS), P()),
                         out_specs=P())(W, E, U, p, targets, lr)
