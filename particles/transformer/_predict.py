"""The particle prediction for `--train wo2`, and how well it agrees with the Transformer.

With the other matrices at their ideal memories, an induction position t (a trigger seen
before, whose next token is the sequence's output o) attends to the earlier position that
holds o, so layer 2 writes W_O^2 W_V^2 e_o into the residual stream and the loss there is
the cross-entropy of the scores u_y^T W_O^2 (W_V^2 e_o). Averaged over induction positions
this is the associative-memory loss L_mem(W) = sum_o p(o) CE(S[o], o), S = E' W^T U^T, with
E' = E W_V^{2T} (the value-mapped embeddings), U the unembeddings and p(o) the law of the
copied token at induction positions.

Effective step size. The Transformer's loss is a mean over all B (T - 1) predicted positions,
of which a fraction `frac` are induction positions, so (in expectation over batches, and
ignoring the gradient W_O^2 receives at other positions)

    grad_{W_O^2} L_Transformer = frac * grad L_mem,

and one SGD step of size eta on the Transformer is one GD step of size eta_eff = frac * eta
on the memory problem. `particles.gd` is run at eta_eff, in float64.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import particles

from . import _model


def memory_problem(setup_) -> particles.Problem:
    """The `particles.Problem` that W_O^2 solves (targets f*(o) = o, W0 = W_O^2 at start)."""
    emb, w0 = setup_.emb, setup_.w0
    E = np.asarray(emb.E, np.float64) @ np.asarray(w0.WV2, np.float64).T
    U = np.asarray(emb.U, np.float64)
    N = E.shape[0]
    return particles.Problem.from_embeddings(E, U, np.asarray(setup_.p, np.float64), np.arange(N),
                                             W0=np.asarray(w0.WO2, np.float64))


def predict(setup_, lrs, steps: int, *, progress: bool = False) -> dict:
    """Run `particles.gd` on the memory problem at eta_eff = frac * eta for each eta.

    **Returns:** dict with `eta_eff` (L,), `loss` (L, S + 1), `margins` (L, S + 1, N), `problem`.
    """
    problem = memory_problem(setup_)
    eta_eff = np.asarray(lrs, np.float64) * setup_.frac
    traj = particles.gd(problem, jnp.asarray(eta_eff), steps)
    return dict(eta_eff=eta_eff, loss=np.asarray(traj.loss), margins=np.asarray(traj.margins), problem=problem)


def spike_steps(loss: np.ndarray, rel: float = 0.05, abs_tol: float = 1e-3) -> np.ndarray:
    """Steps k where the loss rises: loss[k] > loss[k-1] (1 + rel) + abs_tol."""
    loss = np.asarray(loss)
    up = loss[1:] > loss[:-1] * (1 + rel) + abs_tol
    return np.nonzero(up)[0] + 1


def agreement(train_out: dict, pred: dict, lrs, *, window: int = 2) -> list:
    """Per step size: how well the particle prediction tracks the Transformer.

    - `margin_corr`, `margin_mae`: Pearson correlation and mean absolute error between the
      Transformer's W_O^2 margins and the predicted margins, over all steps and tokens.
    - `loss_mae`: mean |probe loss - predicted loss| (both sum_o p(o) CE of the W_O^2 memory).
    - `spikes_transformer`, `spikes_particles`: steps where that loss rises by > 5%;
      `spikes_matched`: the fraction of Transformer spikes with a particle spike within
      `window` steps (None when there is no Transformer spike).
    """
    rows = []
    for i, lr in enumerate(lrs):
        mt = train_out["margins_O"][i]
        mp = pred["margins"][i][: mt.shape[0]]
        lt = train_out["probe_loss"][i]
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
