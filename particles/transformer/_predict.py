"""The particle prediction of the W_O^2 memory, and how well it tracks the Transformer.

When W_O^2 alone learns (modes `wo2`, `wo2_identity`), every other array is frozen, so at a
position t the layer-2 attention output v_t = W_V^2 sum_s a^2_ts h^1_s and the direct-path
logits b_t = U h^1_t do not depend on W_O^2, and the logits are b_t + U W_O^2 v_t: a linear
associative memory in W_O^2 with input embeddings v_t, output embeddings U (the rows of the
frozen output matrix), target z_{t+1} and initial scores b_t + U W_O^2(0) v_t.

[`memory_problem`][] builds that problem as a `particles.Problem`: one particle per counted
position of a pool of sampled sequences (equal weights: the authors' loss is a mean over
counted positions), plus one massless particle (p = 0) per token k with input W_V^2 e_k: it
feels and exerts no force, and its scores are the W_O^2 probe u_y . W_O^2 W_V^2 e_k, so its
margins are the probe margins the Transformer logs. One full-batch `particles.gd` step on the
pool is one SGD step of the Transformer on the same sequences (a test checks it to float
tolerance); on fresh batches it is that step in expectation, and `particles.sgd` with the
batch's number of counted positions adds minibatch noise of the same size.

Not modelled: weight decay (`particles.gd` and `particles.sgd` have none; the Transformer's
W <- (1 − lr wd) W shrinks W_O^2 by 2% a step at lr = 200, wd = 1e-4), momentum, and the
correlation of the positions of one sequence (they share its trigger outputs; `sgd` draws
positions independently). The particles run in float64.
"""

from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import particles
from particles import _events

from . import _data, _model

_layer2_inputs = eqx.filter_jit(_model.layer2_inputs, )


def pool_arrays(p0: _model.Params, tokens, counts, objective: str = "head", *, sqrtd: bool = True, batch: int = 64):
    """The W_O^2 problem's particles on given sequences.

    **Arguments:** the frozen weights `p0`; `tokens`, `counts` (n, T + 1) from [`sample`][];
    `objective` ("head": positions with counts >= 2; "all": every position).

    **Returns:** `(V, B, Y)` float64/int: inputs v_t (n_pos, d), offsets b_t (n_pos, N) and
    targets (n_pos,) of the selected positions, in row-major order of (sequence, position).
    """
    tokens, counts = np.asarray(tokens), np.asarray(counts)
    T = tokens.shape[1] - 1
    V, B, Y = [], [], []
    for i in range(0, len(tokens), batch):
        x = jnp.asarray(tokens[i:i + batch, :T])
        vt, bt = (np.asarray(a, np.float64) for a in _layer2_inputs(p0, x, sqrtd))
        on = counts[i:i + batch, 1:] >= 2 if objective == "head" else np.ones_like(counts[i:i + batch, 1:], bool)
        V.append(vt[on])
        B.append(bt[on])
        Y.append(tokens[i:i + batch, 1:][on])
    return np.concatenate(V), np.concatenate(B), np.concatenate(Y)


def problem_from_arrays(p0: _model.Params, V, B, Y) -> particles.Problem:
    """The `particles.Problem` of W_O^2 on positions (V, B, Y), with the N probe particles last.

    Rows 0..n−1: the positions, p = 1/n, S0 = b_t + U W_O^2(0) v_t, target z_{t+1}; rows
    n..n+N−1: the probes, p = 0, input W_V^2 e_k, target k.

    >>> p0 = _model.init_params(_model.ModelConfig(d=4), jax.random.key(0), N=3, T=2)
    >>> prob = problem_from_arrays(p0, np.ones((2, 4)), np.zeros((2, 3)), np.array([0, 1]))
    >>> prob.N, prob.M
    (5, 3)
    """
    n, N = len(Y), p0.E.shape[0]
    if n == 0:
        raise ValueError("the pool has no counted positions: use more or longer sequences.")
    E_probe = np.asarray(p0.E, np.float64) @ np.asarray(p0.WV2, np.float64).T
    X = np.concatenate([np.asarray(V, np.float64), E_probe])
    U = np.asarray(p0.U, np.float64)
    p = np.concatenate([np.full(n, 1.0 / n), np.zeros(N)])
    targets = np.concatenate([np.asarray(Y), np.arange(N)])
    problem = particles.Problem.from_embeddings(X, U, p, targets, W0=np.asarray(p0.WO2, np.float64))
    offset = jnp.asarray(np.concatenate([np.asarray(B, np.float64), np.zeros((N, N))]), problem.dtype)
    # The direct path b_t is the `offset` (scores not from W_O^2: weight decay leaves them);
    # S0 is no longer E W0^T U^T, so W0 goes (nothing rebuilds S0 from it).
    return eqx.tree_at(lambda m: (m.S0, m.W0, m.offset), problem, (problem.S0 + offset, None, offset),
                       is_leaf=lambda x: x is None)


def memory_problem(data: _data.DataConfig, p0: _model.Params, *, objective: str = "head", n_sequences: int = 256,
                   n_particles: Optional[int] = 8000, seed: int = 12345, sqrtd: bool = True):
    """The W_O^2 problem on a pool of `n_sequences` fresh sequences (at most `n_particles`
    positions, a uniform seeded subsample: the dense Gram matrix of the pool costs 8 n^2 bytes).

    **Returns:** `(problem, info)`; `info` holds `n_pool` (positions kept), `per_sequence`
    (counted positions per sequence before subsampling) and `copied` ((N,), the law of the
    target at the pool's positions).
    """
    tokens, counts = _data._sample_jit(data, jax.random.key(seed), n_sequences)
    V, B, Y = pool_arrays(p0, tokens, counts, objective, sqrtd=sqrtd)
    per_sequence = len(Y) / n_sequences
    if n_particles is not None and len(Y) > n_particles:
        keep = np.sort(np.random.default_rng(seed).choice(len(Y), n_particles, replace=False))
        V, B, Y = V[keep], B[keep], Y[keep]
    copied = np.bincount(Y, minlength=data.N) / max(len(Y), 1)
    return problem_from_arrays(p0, V, B, Y), dict(n_pool=len(Y), per_sequence=per_sequence, copied=copied)


def sharpness(problem: particles.Problem, iters: int = 60, seed: int = 0) -> float:
    """The largest Hessian eigenvalue of the pool loss in W_O^2 at the start (power iteration).

    GD with step eta is locally stable where eta < 2 / sharpness.
    """
    n_pool = int(np.sum(np.asarray(problem.p) > 0))
    arrays = (problem.S0[:n_pool], problem.Y[:n_pool], problem.p[:n_pool], problem.E[:n_pool], problem.U)
    d = problem.E.shape[1]
    t = jax.random.normal(jax.random.key(seed), (d, d), problem.dtype)
    lam = 0.0
    for _ in range(iters):
        t = t / jnp.linalg.norm(t)
        h = _hvp(t, *arrays)
        lam = float(jnp.vdot(t, h))
        t = h
    return lam


def _pool_loss(D, S0, Y, p, X, U):
    # S(W) = S0 + X (W − W0)^T U^T: the loss around the start, D = W − W0.
    S = S0 + X @ D.T @ U.T
    return -jnp.sum(p * jnp.sum(Y * jax.nn.log_softmax(S, -1), -1))


@jax.jit
def _hvp(t, S0, Y, p, X, U):
    # The arrays are arguments, not closed-over constants: XLA would constant-fold the
    # whole loss at D = 0 over the pool (minutes of compile time for 10^4 particles).
    D0 = jnp.zeros_like(t)
    return jax.jvp(lambda D: jax.grad(_pool_loss)(D, S0, Y, p, X, U), (D0,), (t,))[1]


# `particles.sgd` draws a batch by inverting the cumulative frequencies (B log N a step) and
# its step costs one pass over the pool whatever B: a paper batch (512 sequences, ~38,000
# counted positions) is affordable. The caps only guard against absurd sizes.
SGD_MAX_BATCH = 65536
SGD_MAX_POOL = 65536


def subsample(problem: particles.Problem, n: int, seed: int = 0) -> particles.Problem:
    """The same problem on at most `n` of its positions (the probe particles kept), reweighted
    uniformly. The dense Gram matrix is rebuilt for the kept rows only."""
    p = np.asarray(problem.p)
    pos = np.nonzero(p > 0)[0]
    if len(pos) <= n:
        return problem
    keep = np.sort(np.random.default_rng(seed).choice(pos, n, replace=False))
    rows = np.concatenate([keep, np.nonzero(p == 0)[0]])
    E = np.asarray(problem.E)[rows]
    w = np.concatenate([np.full(n, 1.0 / n), np.zeros(len(rows) - n)])
    sub = particles.Problem.from_embeddings(E, np.asarray(problem.U), w, np.asarray(problem.targets)[rows])
    offset = None if problem.offset is None else jnp.asarray(np.asarray(problem.offset)[rows], sub.dtype)
    return eqx.tree_at(lambda m: (m.S0, m.offset), sub, (jnp.asarray(np.asarray(problem.S0)[rows], sub.dtype), offset),
                       is_leaf=lambda x: x is None)


def predict(problem: particles.Problem, lrs, steps: int, *, sgd_batch: Optional[int] = None, seed: int = 0,
            weight_decay: float = 0.0) -> dict:
    """Run `particles.gd` on the problem (and `particles.sgd` with `sgd_batch` positions a step),
    with the Transformer's `weight_decay` on W_O^2 (the direct path `problem.offset` stays).

    `particles.sgd` runs on at most `SGD_MAX_POOL` positions of the pool with at most
    `SGD_MAX_BATCH` positions a step (its batch costs batch x pool a step); a Transformer
    batch of 512 sequences holds about 38,000 counted positions, so this SGD is noisier
    (by about sqrt(38000 / 2048) = 4.3 in standard deviation) than the Transformer's.

    **Returns:** a dict of numpy arrays, L = len(lrs), S = steps, N probe tokens: `loss`
    (L, S + 1) (the pool loss), `margins` (L, S + 1, N) (the probe margins = W_O^2 margins),
    and, with `sgd_batch`, `sgd_loss`, `sgd_margins` of the same shapes and `sgd_batch_used`.
    """
    n_pool = int(np.sum(np.asarray(problem.p) > 0))
    lrs = jnp.asarray(np.asarray(lrs, np.float64))
    traj = particles.gd(problem, lrs, steps, weight_decay=weight_decay)
    out = dict(loss=np.asarray(traj.loss), margins=np.asarray(traj.margins)[:, :, n_pool:])
    if sgd_batch:
        small = subsample(problem, SGD_MAX_POOL, seed)
        n_small = int(np.sum(np.asarray(small.p) > 0))
        b = int(min(sgd_batch, SGD_MAX_BATCH))
        st = particles.sgd(small, lrs, steps, b, jax.random.key(seed), weight_decay=weight_decay)
        out.update(sgd_loss=np.asarray(st.loss), sgd_margins=np.asarray(st.margins)[:, :, n_small:],
                   sgd_batch_used=b, sgd_pool=n_small)
    return out


def _corr(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def agreement(loss, margins, pred: dict, lrs, *, window: int = 2, rel: float = 0.2) -> list:
    """Per step size: how well the particle prediction tracks the Transformer.

    **Arguments:** the Transformer's batch `loss` (L, S) and W_O^2 `margins` (L, S + 1, N);
    `pred` from [`predict`][] (keys `loss`, `margins`, optionally `sgd_loss`, `sgd_margins`).

    **Returns:** one dict per step size: `margin_corr`, `margin_mae` (Pearson correlation
    and mean |difference| of the W_O^2 margins, over steps and tokens, against `particles.gd`),
    `loss_mae` (mean |batch loss − pool loss|), the same three against `particles.sgd`
    (`sgd_*`, when run); `rises`: steps where the Transformer's batch loss rises by more than
    `rel` (20%: batch noise at 512 sequences stays below it, `_events.loss_rises`) or a
    spike starts (`_events.large_spikes`); `gd_rises`: steps where the gd loss rises at all
    (it has no noise); `sgd_rises`; `rises_matched`: the fraction of Transformer rises with a
    gd or sgd rise within `window` steps (None without Transformer rises).
    """
    rows = []
    for i, lr in enumerate(lrs):
        lt, mt = np.asarray(loss[i], np.float64), np.asarray(margins[i], np.float64)
        S = len(lt)
        r = dict(lr=float(lr), margin_corr=_corr(mt, pred["margins"][i]),
                 margin_mae=float(np.nanmean(np.abs(mt - pred["margins"][i][: len(mt)]))),
                 loss_mae=float(np.nanmean(np.abs(lt - pred["loss"][i][:S]))))
        rises = np.union1d(_events.loss_rises(lt, rel=rel), _events.large_spikes(lt))
        gd_rises = _events.loss_rises(pred["loss"][i][:S], rel=0.0, abs_tol=1e-9)
        near = [gd_rises]
        if pred.get("sgd_loss") is not None:
            sgd_rises = _events.loss_rises(pred["sgd_loss"][i][:S], rel=rel)
            near.append(sgd_rises)
            r.update(sgd_margin_corr=_corr(mt, pred["sgd_margins"][i]),
                     sgd_margin_mae=float(np.nanmean(np.abs(mt - pred["sgd_margins"][i][: len(mt)]))),
                     sgd_loss_mae=float(np.nanmean(np.abs(lt - pred["sgd_loss"][i][:S]))),
                     sgd_rises=sgd_rises.tolist())
        near = np.concatenate(near)
        r.update(rises=rises.tolist(), gd_rises=gd_rises.tolist(),
                 rises_matched=(None if rises.size == 0 else
                                float(np.mean([np.any(np.abs(near - k) <= window) for k in rises]))))
        rows.append(r)
    return rows
