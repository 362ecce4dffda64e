"""The particle prediction for `--train wo2`, and how well it agrees with the Transformer.

In `wo2` only W_O^2 moves; every other matrix is frozen, so at an induction position t the
layer-2 attention output v_t = W_V^2 sum_s a_ts h^1_s and the direct-path logits
b_t = U h^1_t do not depend on W_O^2, and the logits are b_t + U W_O^2 v_t: a linear
associative memory in W_O^2 with input embedding v_t, unembeddings U, target z_{t+1} and
initial scores b_t. Two particle problems follow.

- `pool_problem` (exact): one particle per induction position of a fixed pool of sampled
  sequences (equal weights p), with S0 = b + V W_0^T U^T, plus one massless particle
  (p = 0) per token k with input W_V^2 e_k: it feels and exerts no force, but its scores
  are the W_O^2 memory probe u_y^T W_O^2 W_V^2 e_k, so its margins are the probe margins.
  With the "induction" objective (the authors' loss, a mean over induction positions) one
  SGD step of size eta on the Transformer is, in expectation over batches, one GD step of
  size eta on this problem's population loss; the pool replaces the population.
- `memory_problem` (idealised): the token memory of paper-notes section 1, one particle per
  copied token o with input W_V^2 e_o, weight p(o), target o, S0 = 0. It assumes one-hot
  layer-2 attention onto the copied token, no positional or previous-token part in v_t and
  no direct path (b_t = 0).

With the objective "all" (mean over all B (T - 1) positions), the induction part of the
gradient is scaled by the fraction `frac` of induction positions (eta_eff = frac * eta),
and W_O^2 also gets gradient from the other positions, which neither problem models.
`particles.gd` runs in float64.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import particles

from . import _model


def memory_problem(setup_) -> particles.Problem:
    """The idealised token memory W_O^2 solves (targets f*(o) = o, W0 = W_O^2 at start)."""
    emb, w0 = setup_.emb, setup_.w0
    E = np.asarray(emb.E, np.float64) @ np.asarray(w0.WV2, np.float64).T
    U = np.asarray(emb.U, np.float64)
    N = E.shape[0]
    return particles.Problem.from_embeddings(E, U, np.asarray(setup_.p, np.float64), np.arange(N),
                                             W0=np.asarray(w0.WO2, np.float64))


_layer2_inputs = eqx.filter_jit(_model.layer2_inputs)


def pool_problem(setup_, n_sequences: int = 512, n_particles: int | None = 3000, *, key=None, batch: int = 64):
    """The exact particle problem of `wo2` on a pool of `n_sequences` sampled sequences.

    At most `n_particles` induction positions are kept (a uniform subsample, seeded).

    **Returns:** `(problem, n_pool)`: rows 0..n_pool-1 are the induction positions of the
    pool (p = 1/n_pool each, S0 = b_t + U W_O^2 v_t); the last N rows are the massless
    probe particles of the tokens (their margins are the W_O^2 probe margins).
    """
    emb, w0, data = setup_.emb, setup_.w0, setup_.data
    key = jax.random.key(12345) if key is None else key
    V, B, Y = [], [], []
    sample = eqx.filter_jit(lambda d, k: d.sample(k, batch))
    for i in range(max(1, n_sequences // batch)):
        b = sample(data, jax.random.fold_in(key, i))
        v, off = (np.asarray(a, np.float64) for a in _layer2_inputs(w0, emb, b.tokens))
        ind = np.asarray(b.induction)
        V.append(v[ind])
        B.append(off[ind])
        Y.append(np.asarray(b.tokens)[:, 1:][ind[:, :-1]])
    V, B, Y = np.concatenate(V), np.concatenate(B), np.concatenate(Y)
    if n_particles is not None and len(Y) > n_particles:
        # Positions of one sequence share its output: many sequences, few positions each,
        # covers the outputs; a uniform subsample keeps the objective's position weighting.
        keep = np.sort(np.random.default_rng(0).choice(len(Y), n_particles, replace=False))
        V, B, Y = V[keep], B[keep], Y[keep]
    n_pool, N = len(Y), emb.E.shape[0]
    if n_pool == 0:
        raise ValueError(f"n_sequences={n_sequences} is not allowed: the pool has no induction positions.")
    E_probe = np.asarray(emb.E, np.float64) @ np.asarray(w0.WV2, np.float64).T
    X = np.concatenate([V, E_probe])
    U = np.asarray(emb.U, np.float64)
    p = np.concatenate([np.full(n_pool, 1.0 / n_pool), np.zeros(N)])
    targets = np.concatenate([Y, np.arange(N)])
    # From the embeddings so that G_E is applied through X (n >> d); then add the offsets.
    problem = particles.Problem.from_embeddings(X, U, p, targets, W0=np.asarray(w0.WO2, np.float64))
    S0 = problem.S0 + jnp.asarray(np.concatenate([B, np.zeros((N, N))]), problem.dtype)
    return eqx.tree_at(lambda m: (m.S0, m.W0), problem, (S0, None), is_leaf=lambda x: x is None), n_pool


def predict(setup_, lrs, steps: int, *, objective: str = "induction", kind: str = "pool",
            n_sequences: int = 512, n_particles: int | None = 20000, progress: bool = False) -> dict:
    """Run `particles.gd` on the `kind` problem ("pool" or "memory") for each eta.

    The pool stands in for the population the Transformer samples fresh batches from, so it
    must be large against the d^2 parameters of W_O^2: at d = 64 (4096 parameters) GD nearly
    interpolates a pool of 3,000 positions (loss 0.07 after 200 steps at eta = 200, where the
    Transformer's batch loss stays near 0.5); 20,000 positions (`n_particles`, the default)
    give 0.29 and all 41,681 positions of 512 sequences 0.31, at about 30 s for four rates.

    **Returns:** dict with `eta_eff` (L,), `loss` (L, S + 1) (pool: the induction loss on
    the pool; memory: sum_o p(o) CE), `margins` (L, S + 1, N) (the W_O^2 probe margins),
    `kind`, `problem`.
    """
    if kind not in ("pool", "memory"):
        raise ValueError(f"kind={kind!r} is not allowed: use 'pool' or 'memory'.")
    if objective not in ("induction", "all"):
        raise ValueError(f"objective={objective!r} is not allowed: use 'induction' or 'all'.")
    scale = 1.0 if objective == "induction" else setup_.frac
    eta_eff = np.asarray(lrs, np.float64) * scale
    N = setup_.emb.E.shape[0]
    if kind == "memory":
        problem = memory_problem(setup_)
        traj = particles.gd(problem, jnp.asarray(eta_eff), steps)
        margins = np.asarray(traj.margins)
    else:
        problem, n_pool = pool_problem(setup_, n_sequences, n_particles)
        traj = particles.gd(problem, jnp.asarray(eta_eff), steps)
        margins = np.asarray(traj.margins)[:, :, n_pool:]
    return dict(eta_eff=eta_eff, loss=np.asarray(traj.loss), margins=margins, kind=kind, problem=problem)


def spike_steps(loss: np.ndarray, rel: float = 0.05, abs_tol: float = 1e-3) -> np.ndarray:
    """Steps k where the loss rises: loss[k] > loss[k-1] (1 + rel) + abs_tol."""
    loss = np.asarray(loss)
    up = loss[1:] > loss[:-1] * (1 + rel) + abs_tol
    return np.nonzero(up)[0] + 1


def large_spikes(loss: np.ndarray, factor: float = 3.0, window: int = 20) -> np.ndarray:
    """Steps where a loss spike starts: loss[k] > factor * median(loss[k - window : k]).

    Robust to minibatch noise (a batch rarely triples the recent median loss), unlike
    [`spike_steps`][]. Consecutive such steps are one spike, reported at its first step; the
    first `window` steps (no history yet) are never spikes.
    """
    loss = np.asarray(loss, np.float64)
    hot = np.zeros(loss.shape, bool)
    if len(loss) > window:
        # row j is loss[j : j + window], the history of step j + window
        past = np.median(np.lib.stride_tricks.sliding_window_view(loss[:-1], window), axis=1)
        hot[window:] = loss[window:] > factor * past
    start = hot & ~np.concatenate([[False], hot[:-1]])
    return np.nonzero(start)[0]


def margin_jumps(margins: np.ndarray, rel: float = 0.25, skip: int = 5) -> np.ndarray:
    """Steps k where some token's margin moves by more than `rel` * max_x |m_k(x)| in one step.

    `margins` (S, N); the first `skip` steps (the fast initial phase) are ignored. A jump
    followed by a slow relaxation is the oscillation of the paper's large-η memories.
    """
    m = np.asarray(margins, np.float64)
    if len(m) < 2:
        return np.zeros(0, np.int64)
    scale = np.max(np.abs(m[:-1]), axis=1)
    big = np.any(np.abs(np.diff(m, axis=0)) > rel * scale[:, None], axis=1)
    big[:skip] = False
    return np.nonzero(big)[0]


def agreement(train_out: dict, pred: dict, lrs, *, window: int = 2) -> list:
    """Per step size: how well the particle prediction tracks the Transformer.

    - `margin_corr`, `margin_mae`: Pearson correlation and mean absolute error between the
      Transformer's W_O^2 margins and the predicted margins, over all steps and tokens.
    - `loss_mae`: mean |Transformer loss - predicted loss|: for the pool prediction the
      Transformer's batch induction loss against the pool loss; for the memory prediction
      the probe loss sum_o p(o) CE of the W_O^2 memory against the memory problem's loss.
    - `spikes_transformer`, `spikes_particles`: steps where that loss rises by > 5%;
      `spikes_matched`: the fraction of Transformer spikes with a particle spike within
      `window` steps (None when there is no Transformer spike).
    """
    rows = []
    for i, lr in enumerate(lrs):
        mt = train_out["margins_O"][i]
        mp = pred["margins"][i][: mt.shape[0]]
        # pool: its loss is the population induction loss, seen by the Transformer on each batch.
        lt = train_out["induction_loss" if pred.get("kind") == "pool" else "probe_loss"][i]
        lp = pred["loss"][i][: lt.shape[0]]
        ok = np.isfinite(mt).all() and np.isfinite(mp).all()
        corr = float(np.corrcoef(mt.ravel(), mp.ravel())[0, 1]) if ok and mt.std() > 0 and mp.std() > 0 else float("nan")
        st, sp = spike_steps(lt), spike_steps(lp)
        matched = None
        if st.size:
            matched = float(np.mean([np.any(np.abs(sp - k) <= window) for k in st]))
        rows.append(dict(
            lr=float(lr),
            eta_eff=float(pred["eta_eff"][i]),
            margin_corr=corr,
            margin_mae=float(np.mean(np.abs(mt - mp))),
            loss_mae=float(np.mean(np.abs(lt - lp))),
            spikes_transformer=st.tolist(),
            spikes_particles=sp.tolist(),
            spikes_matched=matched,
        ))
    return rows
