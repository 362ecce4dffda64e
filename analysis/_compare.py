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

import dataclasses
import math
from typing import Any, Optional

import numpy as np

from particles import theory as th

from ._detectors import detect_cycle, finite_rows, head, log_slope, plain, times

__all__ = ["Row", "Comparison", "compare", "regimes"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One prediction against its measurement.

    - `quantity`: what is compared, e.g. "margin m(0) at t=1000".
    - `predicted`, `simulated`: numbers (or booleans for yes/no predictions).
    - `abs_error`, `rel_error`: |simulated - predicted| and that over |predicted|
      (None for booleans; inf relative error when the prediction is 0).
    - `holds`: where or why the prediction applies ("exact", "asymptotic, t=1e3", ...).
    """

    quantity: str
    predicted: Any
    simulated: Any
    abs_error: Optional[float]
    rel_error: Optional[float]
    holds: str

    @classmethod
    def of(cls, quantity: str, predicted, simulated, holds: str) -> "Row":
        if isinstance(predicted, (bool, np.bool_)) or isinstance(simulated, (bool, np.bool_)):
            return cls(quantity, bool(predicted), bool(simulated), None, None, holds)
        predicted, simulated = float(predicted), float(simulated)
        err = abs(simulated - predicted)
        rel = err / abs(predicted) if predicted != 0 else (0.0 if err == 0 else math.inf)
        return cls(quantity, predicted, simulated, err, rel, holds)

    @property
    def agrees(self) -> Optional[bool]:
        """For yes/no rows: predicted == simulated; None for numeric rows."""
        if self.abs_error is None:
            return self.predicted == self.simulated
        return None

    @classmethod
    def worst(cls, quantity: str, predicted, simulated, holds: str) -> "Row":
        """The largest deviation over many values: predicted 0, simulated max |sim - pred|,
        rel_error the largest |sim - pred| / |pred| over the non-zero predictions."""
        predicted, simulated = _np(predicted), _np(simulated)
        err = np.abs(simulated - predicted)
        nz = predicted != 0
        rel = float(np.max(err[nz] / np.abs(predicted[nz]))) if np.any(nz) else None
        return cls(quantity, 0.0, float(err.max()), float(err.max()), rel, holds)

    def to_json(self) -> dict:
        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, str):
        return x
    x = float(x)
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    return f"{x:.6g}" if 1e-3 <= abs(x) < 1e6 else f"{x:.3e}"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Rows of predictions against a run, with the regimes found and notes.

    `text()` renders an aligned plain-text table, `markdown()` a markdown table and
    `to_json()` a list of row dicts.
    """

    rows: list
    regimes: tuple = ()
    integrator: str = "?"
    lr: Optional[float] = None
    notes: tuple = ()

    _HEAD = ("quantity", "predicted", "simulated", "abs error", "rel error", "holds")

    def _cells(self) -> list[tuple[str, ...]]:
        return [(r.quantity, _fmt(r.predicted), _fmt(r.simulated), _fmt(r.abs_error), _fmt(r.rel_error), r.holds)
                for r in self.rows]

    def _title(self) -> str:
        lr = f", lr={_fmt(self.lr)}" if self.lr is not None else ""
        return f"{self.integrator}{lr}; regimes: {', '.join(self.regimes) or 'none recognised'}"

    def text(self) -> str:
        cells = [self._HEAD] + self._cells()
        width = [max(len(c[i]) for c in cells) for i in range(len(self._HEAD))]
        right = (False, True, True, True, True, False)

        def line(c):
            return "  ".join(s.rjust(w) if r else s.ljust(w) for s, w, r in zip(c, width, right)).rstrip()

        out = [self._title(), line(cells[0]), "  ".join("-" * w for w in width)]
        out += [line(c) for c in cells[1:]]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        esc = lambda s: s.replace("|", "\\|")
        out = [f"*{esc(self._title())}*", "", "| " + " | ".join(self._HEAD) + " |",
               "|" + "|".join([":--", "--:", "--:", "--:", "--:", ":--"]) + "|"]
        out += ["| " + " | ".join(esc(s) for s in c) + " |" for c in self._cells()]
        if self.notes:
            out += [""] + [f"- {esc(n)}" for n in self.notes]
        return "\n".join(out)

    def to_json(self) -> list[dict]:
        return [r.to_json() for r in self.rows]

    def __str__(self) -> str:
        return self.text()


# ------------------------------------------------------------------ regimes
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


def _lr_of(traj, lr) -> Optional[float]:
    if lr is not None:
        return float(lr)
    value = traj.metadata.get("lr")
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _token_set(p: np.ndarray) -> list[int]:
    """All tokens when few, else the most frequent, the median and the rarest."""
    N = len(p)
    if N <= 4:
        return list(range(N))
    order = np.argsort(-p, kind="stable")
    return sorted({int(order[0]), int(order[N // 2]), int(order[-1])})


def _tfmt(t) -> str:
    return f"{float(t):.4g}"


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
    eta = _lr_of(traj, lr)
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
    ctx = _Context(problem, traj, n, integrator, eta)
    found = regimes(problem)
    rows = []
    if "orthogonal" in found:
        rows += _orthogonal(ctx)
    if "two_particles" in found:
        rows += _two_particles(ctx)
    if "underparameterized" in found:
        more, separable = _underparameterized(ctx)
        rows += more
        if separable:  # d < N, yet every margin can be made positive: no finite W_CE
            found = found + ("separable",)
    if "separable" in found and not {"orthogonal", "two_particles"} & set(found):
        rows += _separable(ctx)
    if integrator == "sgd":
        notes.append("sgd: the predictions are for full-batch dynamics; SGD follows them only on average")
    return Comparison(rows, found, integrator, eta, tuple(notes))


@dataclasses.dataclass
class _Context:
    problem: Any
    traj: Any
    n: int  # finite rows
    integrator: str
    eta: Optional[float]  # None for the flow (time plays the role of eta * steps)

    @property
    def t(self) -> np.ndarray:
        return _np(self.traj.t)[: self.n]

    @property
    def steps(self) -> np.ndarray:
        return times(self.traj)[: self.n]

    @property
    def margins(self) -> np.ndarray:
        return _np(self.traj.margins)[: self.n]

    @property
    def eta_t(self) -> float:
        """η t at the last finite row (t for the flow): the effective time."""
        return float(self.t[-1]) * (1.0 if self.eta is None else self.eta)

    @property
    def when(self) -> str:
        return f"t={_tfmt(self.t[-1])}" if self.eta is None else f"step {int(self.steps[-1])}"


def _orthogonal(c: _Context) -> list[Row]:
    P = c.problem
    p, M = _np(P.p), P.M
    if c.integrator == "flow":
        pred = _np(th.orthogonal_flow_margin(c.t[:, None], p[None, :], M))
        how = "exact (Lambert W)"
    else:
        last = int(c.steps[-1])
        pred = _np(th.orthogonal_gd_margin(last, c.eta, p, M))[np.asarray(c.steps, np.int64)]
        how = "exact (GD recursion)" if c.integrator != "sgd" else "GD recursion vs SGD"
    pred = np.broadcast_to(pred, c.margins.shape)
    rows = [Row.of(f"margin m({x}) at {c.when}", pred[-1, x], c.margins[-1, x], how) for x in _token_set(p)]
    rows.append(Row.worst("max over x, saved t of |m - m_theory|", pred, c.margins, how))
    rows.append(Row.of(f"loss at {c.when}", float(_np(th.orthogonal_loss(pred[-1], p, M))),
                       float(_np(c.traj.loss)[c.n - 1]), "exact: loss of the predicted margins"))
    if c.t[-1] > 0:
        Np = int(np.sum(p > 0))
        eta = 1.0 if c.eta is None else c.eta
        pred = float(_np(th.orthogonal_loss_asymptote(float(c.t[-1]), Np, M, eta))) * c.eta_t  # L·ηt -> N(M-1)/M
        rows.append(Row.of("loss · ηt → N(M-1)/M", pred, float(_np(c.traj.loss)[c.n - 1]) * c.eta_t,
                           f"asymptotic, ηt={_tfmt(c.eta_t)}"))
    return rows


def _two_particles(c: _Context) -> list[Row]:
    P = c.problem
    p1, p2 = (float(v) for v in _np(P.p))
    alpha = float(_np(P.G_E)[0, 1])
    eta = 1.0 if c.eta is None else c.eta
    rows = []
    L = _np(c.traj.loss)
    steps = np.asarray(c.steps)
    discrete = c.integrator in ("gd", "gd_weights")
    forgets = bool(_np(th.two_particles_forgets(alpha, p1)))
    if discrete:
        pred = _np(th.two_particles_gd_margins(int(steps[-1]), eta, alpha, p1))[steps.astype(np.int64)]
        rows.append(Row.worst("max over x, saved steps of |m - m_theory|", pred, c.margins, "exact (margin map)"))
    if discrete and np.any(steps == 1):
        k = int(np.flatnonzero(steps == 1)[0])
        m1 = _np(th.two_particles_first_step(eta, alpha, p1))
        for x in range(2):
            rows.append(Row.of(f"first-step margin m({x}) = η(p_x - α p_other)", m1[x], c.margins[k, x],
                               "exact, step 1"))
        rows.append(Row.of("a token is mispredicted after step 1 (α > p_rare/p_freq)", forgets,
                           bool(np.any(c.margins[k] < 0)), "exact, step 1"))
    rare = 1 if p1 >= p2 else 0
    if c.integrator != "flow":
        rows.append(Row.of(f"rare token's margin ever < 0 (saved rows to {c.when})", forgets,
                           bool(np.any(c.margins[:, rare] < 0)), "first-step criterion; large lr can add dips"))
    t_last = float(c.t[-1])
    when = f"asymptotic, ηt={_tfmt(c.eta_t)}"
    if t_last > 0:
        pred = _np(th.two_particles_margin_asymptote(t_last, eta, alpha, p1))
        for x in range(2):
            rows.append(Row.of(f"margin m({x}) ≈ log(2(1-α)η p_x t)", pred[x], c.margins[-1, x], when))
    if t_last > 0:
        pred = float(_np(th.two_particles_loss_asymptote(t_last, eta, alpha))) * c.eta_t  # L·ηt -> 1/(1-α)
        rows.append(Row.of("loss · ηt → 1/(1-α)", pred, float(L[c.n - 1]) * c.eta_t, when))
    if p1 != p2 and p1 > 0 and p2 > 0:
        rows.append(Row.of("m(0) - m(1) → log(p1/p2)", math.log(p1 / p2), c.margins[-1, 0] - c.margins[-1, 1], when))
    return rows


def _separable(c: _Context) -> list[Row]:
    rows = []
    try:
        mm = th.max_margin(c.problem)
    except ValueError:  # not separable after all (e.g. a zero input with p > 0)
        mm = None
    if mm is not None:
        rows.append(Row.of("loss · ηt → ‖W_mm‖²", float(_np(mm.norm2)), float(_np(c.traj.loss)[c.n - 1]) * c.eta_t,
                           f"asymptotic, slow (~1/log t), ηt={_tfmt(c.eta_t)}"))
    try:
        with np.errstate(all="ignore"):
            slope = log_slope(head(c.traj, c.n))
        rows.append(Row.of("min over x of dm/dlog t", 1.0, float(np.min(slope)),
                           f"asymptotic log growth, late half of log t to {c.when}"))
    except ValueError:
        pass
    return rows


def _underparameterized(c: _Context) -> tuple[list[Row], bool]:
    """Rows for d < N, and whether the problem turned out separable (no finite W_CE)."""
    rows = []
    P = c.problem
    L = float(_np(c.traj.loss)[c.n - 1])
    z = float(_np(c.traj.zero_one)[c.n - 1])
    try:
        ce = th.ce_minimizer(P)
    except ValueError as e:
        if "separable" in str(e):
            return [], True
        raise
    best = th.best_zero_one(P)
    conv = "if the run converged (small lr)"
    rows.append(Row.of(f"loss at {c.when} → L(W_CE)", float(_np(ce.loss)), L, conv))
    rows.append(Row.of(f"0-1 loss at {c.when} → L01(W_CE)", float(_np(ce.zero_one)), z, conv))
    how = "exact search: a lower bound" if best.exact else "best found by search (upper bound on the minimum)"
    rows.append(Row.of("min over W of 0-1 loss (≤ simulated)", float(_np(best.zero_one)), z, how))
    rows.append(Row.of("gap 𝓔 = L01(W_CE) - min L01", float(_np(ce.zero_one)) - float(_np(best.zero_one)),
                       z - float(_np(best.zero_one)), conv + ("" if best.exact else "; min from a search")))
    if c.eta is not None and c.integrator in ("gd", "gd_weights"):
        ratio = float(_np(th.stability_ratio(P, ce.scores, c.eta)))
        # Settled: the last 10 saved rows agree to 1e-6 (a period-2 cycle or drift does not).
        cyc = detect_cycle(head(c.traj, c.n), max_period=1, tol=1e-6, tail=min(c.n, 10))
        rows.append(Row.of(f"GD settles (η λ_max(W_CE)/2 = {ratio:.3g} < 1)", ratio < 1, cyc is not None,
                           "linear stability at W_CE, given enough steps"))
    return rows, False


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
