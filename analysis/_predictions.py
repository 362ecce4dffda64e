"""The rows of `compare`, one function per regime of paper §3: what `particles.theory`
predicts for a run, next to what the run did, with where each prediction holds."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

from particles import theory as th

from ._table import Row
from ._detectors import detect_cycle, log_slope
from ._rows import head, times

MAX_MARGIN_BUDGET = 4e5
"""The separable row solves the max-margin QP only when constraints × dimensions stay below
this (N = M = 20 is 380 × 400): larger ones take minutes (call `theory.max_margin` directly)."""

SETTLED_ROWS, SETTLED_TOL = 10, 1e-6
"""GD "settles" when its last SETTLED_ROWS saved rows agree to SETTLED_TOL (a fixed point)."""


def lr_of(traj, lr) -> Optional[float]:
    """The step size: `lr` when given, else the trajectory's metadata (None for the flow)."""
    if lr is not None:
        return float(lr)
    try:
        return float(traj.metadata.get("lr"))
    except (TypeError, ValueError):
        return None


def _np(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def _token_set(p: np.ndarray) -> list[int]:
    """All tokens when few, else the most frequent, the median and the rarest."""
    N = len(p)
    if N <= 4:
        return list(range(N))
    order = np.argsort(-p, kind="stable")
    return sorted({int(order[0]), int(order[N // 2]), int(order[-1])})


def _tfmt(t) -> str:
    return f"{float(t):.4g}"


@dataclasses.dataclass
class Context:
    """A run as the rows read it: its finite rows, integrator and step size."""

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
    def loss(self) -> float:
        return float(_np(self.traj.loss)[self.n - 1])

    @property
    def eta_t(self) -> float:
        """η t at the last finite row (t for the flow): the effective time."""
        return float(self.t[-1]) * (1.0 if self.eta is None else self.eta)

    @property
    def when(self) -> str:
        return f"t={_tfmt(self.t[-1])}" if self.eta is None else f"step {int(self.steps[-1])}"


def orthogonal(c: Context) -> list[Row]:
    """Exact margins (Lambert W / the GD recursion), the loss they imply, and L·ηt."""
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
    rows.append(Row.of(f"loss at {c.when}", float(_np(th.orthogonal_loss(pred[-1], p, M))), c.loss,
                       "exact: loss of the predicted margins"))
    if c.t[-1] > 0:
        live = p[p > 0]
        eta = 1.0 if c.eta is None else c.eta
        # L·ηt → N(M−1)/M once every input is in its asymptotic regime: for GD that needs
        # η M p t ≫ e^{η p} (the first step puts m ≈ η p), not just "large margins".
        valid = np.asarray(th.orthogonal_asymptote_valid(float(c.t[-1]), live, M, lr=c.eta))
        holds = (f"asymptotic, ηt={_tfmt(c.eta_t)}: valid for every input" if valid.all() else
                 f"asymptotic, ηt={_tfmt(c.eta_t)}: not yet valid for {int((~valid).sum())} of {len(live)} inputs "
                 "(η M p t ≫ e^{η p} fails)")
        pred = float(_np(th.orthogonal_loss_asymptote(float(c.t[-1]), len(live), M, eta))) * c.eta_t
        rows.append(Row.of("loss · ηt → N(M-1)/M", pred, c.loss * c.eta_t, holds))
    return rows


def two_particles(c: Context) -> list[Row]:
    """The margin map, the first step and forgetting, and the asymptotes of paper §3.3."""
    P = c.problem
    p1, p2 = (float(x) for x in _np(P.p))
    alpha = float(_np(P.G_E)[0, 1])
    eta = 1.0 if c.eta is None else c.eta
    rows = []
    steps = np.asarray(c.steps)
    discrete = c.integrator in ("gd", "gd_weights")
    forgets = bool(_np(th.two_particles_forgets(alpha, p1)))

    def wrong(m):  # ties go to class 0: token 1 (class 0) is wrong below 0, token 2 at 0 and below
        return (m[..., 0] < 0) | (m[..., 1] <= 0)

    if discrete:
        pred = _np(th.two_particles_gd_margins(int(steps[-1]), eta, alpha, p1))[steps.astype(np.int64)]
        rows.append(Row.worst("max over x, saved steps of |m - m_theory|", pred, c.margins, "exact (margin map)"))
    if discrete and np.any(steps == 1):
        k = int(np.flatnonzero(steps == 1)[0])
        m1 = _np(th.two_particles_first_step(eta, alpha, p1))
        for x in range(2):
            rows.append(Row.of(f"first-step margin m({x}) = η(p_x - α p_other)", m1[x], c.margins[k, x],
                               "exact, step 1"))
        rows.append(Row.of("a token is mispredicted after step 1 (α p₁ ≥ p₂ or α p₂ > p₁)", forgets,
                           bool(wrong(c.margins[k])), "exact, step 1 (ties to class 0)"))
    if c.integrator != "flow":
        later = steps >= 1
        rows.append(Row.of(f"a token is mispredicted at some saved step ≥ 1 (to {c.when})", forgets,
                           bool(np.any(wrong(c.margins[later]))), "first-step criterion; large η can add dips"))
    when = f"asymptotic, ηt={_tfmt(c.eta_t)}"
    t_last = float(c.t[-1])
    if t_last > 0:
        pred = _np(th.two_particles_margin_asymptote(t_last, eta, alpha, p1))
        for x in range(2):
            rows.append(Row.of(f"margin m({x}) ≈ log(2(1-α)η p_x t)", pred[x], c.margins[-1, x], when))
        pred = float(_np(th.two_particles_loss_asymptote(t_last, eta, alpha))) * c.eta_t  # L·ηt -> 1/(1-α)
        rows.append(Row.of("loss · ηt → 1/(1-α)", pred, c.loss * c.eta_t, when))
    if p1 != p2 and p1 > 0 and p2 > 0:
        rows.append(Row.of("m(0) - m(1) → log(p1/p2)", math.log(p1 / p2), c.margins[-1, 0] - c.margins[-1, 1], when))
    return rows


def separable(c: Context) -> list[Row]:
    """L·ηt → ‖W_mm‖² (at the rate max_margin states) and log growth of every margin."""
    rows = []
    P = c.problem
    size = P.N * (P.M - 1) * (P.d or P.N) * P.M
    mm = None
    if size <= MAX_MARGIN_BUDGET:
        try:
            mm = th.max_margin(P)
        except ValueError:  # not separable after all (e.g. a zero input with p > 0)
            mm = None
    if mm is not None:
        rate = None if mm.rate is None else float(_np(mm.rate))
        how = (f"asymptotic, ηt={_tfmt(c.eta_t)}; L·ηt/‖W_mm‖² − 1 decays like "
               + ("log t / t" if rate is None or rate >= 1 else f"t^-{rate:.3g}"))
        rows.append(Row.of("loss · ηt → ‖W_mm‖²", float(_np(mm.norm2)), c.loss * c.eta_t, how))
    try:
        with np.errstate(all="ignore"):
            slope = log_slope(head(c.traj, c.n))
        rows.append(Row.of("min over x of dm/dlog t", 1.0, float(np.min(slope)),
                           f"asymptotic log growth, late half of log t to {c.when}"))
    except ValueError:
        pass
    return rows


def underparameterized(c: Context) -> tuple[list[Row], bool, list[str]]:
    """Rows for d < N, whether the problem turned out separable (no finite W_CE), and notes."""
    rows, notes = [], []
    P = c.problem
    z = float(_np(c.traj.zero_one)[c.n - 1])
    try:
        ce = th.ce_minimizer(P)
    except ValueError as e:
        if "separable" in str(e):
            return [], True, notes
        raise
    best = th.best_zero_one(P)
    conv = "if the run converged (small lr)"
    rows.append(Row.of(f"loss at {c.when} → L(W_CE)", float(_np(ce.loss)), c.loss, conv))
    rows.append(Row.of(f"0-1 loss at {c.when} → L01(W_CE)", float(_np(ce.zero_one)), z, conv))
    ce01, low, high = float(_np(ce.zero_one)), float(_np(best.lower)), float(_np(best.zero_one))
    if best.exact:
        rows.append(Row.of("min over W of 0-1 loss (≤ simulated)", high, z, "exact (MILP, HiGHS optimal)"))
        rows.append(Row.of("gap 𝓔 = L01(W_CE) - min L01", ce01 - high, z - high, conv))
    else:
        # A search gives an upper bound on the minimum (and HiGHS a lower one): never an error of 0.
        how = f"bounds: ≥ {low:.4g} certified ({best.status})"
        rows.append(Row("min over W of 0-1 loss (≤ simulated)", f"≤ {high:.4g}", z, None, None, how))
        rows.append(Row("gap 𝓔 = L01(W_CE) - min L01", f"[{ce01 - high:.4g}, {ce01 - low:.4g}]",
                        f"[{z - high:.4g}, {z - low:.4g}]", None, None, conv + "; an interval: min L01 not exact"))
        notes.append(f"min L01 is bounded, not exact: {best.method}")
    if c.eta is not None and c.integrator in ("gd", "gd_weights"):
        ratio = float(_np(th.stability_ratio(P, ce.scores, c.eta)))
        cyc = detect_cycle(head(c.traj, c.n), max_period=1, tol=SETTLED_TOL, tail=min(c.n, SETTLED_ROWS))
        rows.append(Row.of(f"GD settles (η λ_max(W_CE)/2 = {ratio:.3g} < 1)", ratio < 1, cyc is not None,
                           "linear stability at W_CE, given enough steps"))
    return rows, False, notes
