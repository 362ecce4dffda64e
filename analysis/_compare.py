"""Theory against simulation: `compare(problem, trajectory)` picks the predictions that apply.

The regimes (paper notes §3) are recognised from the problem itself:

- orthogonal: G_E = I, G_U = I, one-hot targets, S0 = 0 — exact margins (Lambert W for the
  flow, the scalar recursion for GD), the loss from the margins, the loss rate.
- two particles: N = M = 2, Y = I, G_U = I, unit inputs, S0 = 0 — first-step margins,
  forgetting of the rare token, asymptotic margins, L·t.
- separable (inputs of full rank, or a feasible max-margin problem) — L·ηt → ‖W_mm‖².
- underparameterized (d < N) — the CE minimizer's loss and 0-1 loss, the gap 𝓔, stability.

Predictions come from `particles.theory`.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import _predictions as pred
from ._rows import finite_rows
from ._table import Comparison

__all__ = ["compare", "regimes", "describe_regime"]


def _np(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def _one_hot(problem) -> bool:
    Y = _np(problem.Y)
    return bool(np.all((Y == 0) | (Y == 1)) and np.all(Y.sum(1) == 1))


def _is_orthogonal(problem) -> bool:
    N, M = problem.N, problem.M
    return (_one_hot(problem) and np.allclose(_np(problem.G_E), np.eye(N), atol=1e-12)
            and np.allclose(_np(problem.G_U), np.eye(M), atol=1e-12) and not np.any(_np(problem.S0)))


def _is_two_particles(problem) -> bool:
    if problem.N != 2 or problem.M != 2:
        return False
    G = _np(problem.G_E)
    return (np.allclose(_np(problem.Y), np.eye(2)) and np.allclose(_np(problem.G_U), np.eye(2), atol=1e-12)
            and np.allclose(np.diag(G), 1.0, atol=1e-12) and not np.any(_np(problem.S0))
            and abs(G[0, 1]) < 1)


def _dim(problem) -> int:
    """d when the embeddings are known, else the rank of G_E (the dimension the inputs span)."""
    if problem.d is not None:
        return int(problem.d)
    return int(np.linalg.matrix_rank(_np(problem.G_E), tol=1e-10 * max(1.0, np.abs(_np(problem.G_E)).max())))


def regimes(problem) -> tuple[str, ...]:
    """The regimes of paper §3 that `problem` belongs to, most specific first.

    Among "orthogonal", "two_particles", "separable" and "underparameterized" (d < N).
    Separable means the inputs have full rank (d >= N, rank G_E = N): any targets can then
    be fitted with margins >= 1.

    **Returns:** a tuple of names.

    >>> import particles as pt
    >>> regimes(pt.two_particles(0.5, 0.7)), regimes(pt.random_sphere(0, 20, 4, 5))
    (('two_particles', 'separable'), ('underparameterized',))
    """
    out = []
    if _is_orthogonal(problem):
        out.append("orthogonal")
    if _is_two_particles(problem):
        out.append("two_particles")
    N = problem.N
    full = np.linalg.matrix_rank(_np(problem.G_E), tol=1e-10) == N
    if full and problem.M > 1:
        out.append("separable")
    if _dim(problem) < N:
        out.append("underparameterized")
    return tuple(out)


# ------------------------------------------------------------------ compare
def compare(problem, trajectory, *, lr: Optional[float] = None) -> Comparison:
    """Put the predictions that apply to `problem` next to what `trajectory` did.

    **Arguments:**

    - `problem`: the [`particles.Problem`][] that was run.
    - `trajectory`: an unbatched Trajectory of `problem` from `gd`, `sgd`, `flow` or
      `gd_weights` (read from `trajectory.metadata['integrator']`).
    - `lr`: the step size; read from the trajectory's metadata when None (flow: not used).

    **Returns:** a [`Comparison`][]. Rows use the last finite row of the run; a run with
    non-finite rows is compared on its finite prefix (and a note says so).

    >>> import particles as pt, particles.analysis as pa
    >>> problem = pt.orthogonal(pt.zipf(3, 1.0))
    >>> table = pa.compare(problem, pt.gd(problem, 1.0, 100))
    >>> table.regimes, table.rows[0].quantity, table.rows[0].abs_error < 1e-12
    (('orthogonal', 'separable'), 'margin m(0) at step 100', True)
    """
    traj = trajectory
    integrator = traj.metadata.get("integrator", "?")
    if integrator not in ("gd", "sgd", "flow", "gd_weights"):
        raise ValueError(
            f"trajectory.metadata['integrator']={integrator!r} is not allowed: use a Trajectory from "
            "particles.gd, sgd, flow or gd_weights."
        )
    if np.ndim(traj.loss) != 1:
        raise ValueError("trajectory is batched: compare one run at a time (trajectory[k]).")
    if np.shape(traj.margins)[-1] != problem.N or np.shape(traj.final_scores)[-1] != problem.M:
        raise ValueError(
            f"trajectory has N={np.shape(traj.margins)[-1]}, M={np.shape(traj.final_scores)[-1]} but the "
            f"problem has N={problem.N}, M={problem.M}: compare a run with its own problem."
        )
    eta = pred.lr_of(traj, lr)
    notes = []
    if integrator != "flow" and eta is None:
        raise ValueError(f"lr={lr!r}: the trajectory's metadata has no numeric lr; pass lr= explicitly.")
    if integrator == "flow":
        eta = None
    if integrator == "gd_weights":
        meta = traj.metadata
        if meta.get("optimizer", "gd") != "gd" or meta.get("layer_norm", False):
            notes.append(f"gd_weights with optimizer={meta.get('optimizer')!r}, layer_norm={meta.get('layer_norm')}: "
                         "the score-space theory describes plain GD only; no rows.")
            return Comparison([], regimes(problem), integrator, eta, tuple(notes))
    n, bad = finite_rows(traj, "compare", warn=False)
    if not traj.ok and traj.steps is None:  # a flow that stopped early: say why, not "non-finite"
        notes.append(f"the flow stopped before t1 ({traj.message}); compared on the {n} rows it reached")
    elif bad is not None:
        notes.append(f"non-finite values from step {bad}: compared on the {n} rows before it")
    if n == 0:
        return Comparison([], regimes(problem), integrator, eta, tuple(notes))
    ctx = pred.Context(problem, traj, n, integrator, eta)
    found = regimes(problem)
    rows = []
    if "orthogonal" in found:
        rows += pred.orthogonal(ctx)
    if "two_particles" in found:
        rows += pred.two_particles(ctx)
    if "underparameterized" in found:
        more, separable, more_notes = pred.underparameterized(ctx)
        rows += more
        notes += more_notes
        if separable:  # d < N, yet every margin can be made positive: no finite W_CE
            found = found + ("separable",)
    if "separable" in found and not {"orthogonal", "two_particles"} & set(found):
        rows += pred.separable(ctx)
    if integrator == "sgd":
        notes.append("sgd: the predictions are for full-batch dynamics; SGD follows them only on average")
    return Comparison(rows, found, integrator, eta, tuple(notes))


def describe_regime(problem) -> str:
    """The regime of `problem` in a few words (the most specific of [`regimes`][]).

    **Returns:** a string. For `particles.orthogonal([0.5, 0.5])`: "orthogonal".
    """
    found = regimes(problem)
    if "orthogonal" in found:
        return "orthogonal"
    if "two_particles" in found:
        return "two particles (the paper's 2-D system)"
    if "underparameterized" in found:
        return "underparameterized (d < N: finite cross-entropy minimizer)"
    if "separable" in found:
        return "separable (correlated inputs of full rank: margins grow like log t)"
    return "/".join(found) or "unknown"
