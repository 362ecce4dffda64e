"""The pieces of `best_zero_one`: the inequality system of "which inputs can be right
together", its LP feasibility and realisation, the mixed-integer program, the local search
(see `_zero_one` for the method and its assumption)."""


from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from .. import _observables as obs
from .._problem import Problem

# The box |w_i| <= _BOX normalises the scale (strict margins >= 1 on l1-normalised rows):
# the exactness assumption is a relative strict margin >= 1 / _BOX. Optimal sets are thin:
# on N = 40, M = 10, d = 5 draws the best set's largest smallest normalised margin was
# 6e-5 to 3e-4, and a box of 1e3 (or 1e2) missed the optimum while 1e4, 1e5 and 1e6 agreed.
# HiGHS accepts binaries within 1e-6 of an integer; times the big-M (~1e5) that is 0.1,
# below the margin 1, so a strict row stays strict in any incumbent (and every incumbent is
# re-solved without big-M). Tighter HiGHS tolerances, to allow a larger box, made it fail.
_BOX = 1e5
# A constraint whose largest achievable normalised slack (w in the unit box) is below this is
# treated as an implicit equality (a tie). HiGHS' LP feasibility tolerance is 1e-7 in the same
# units; anything the MILP accepts as strict has slack >= 0.9 / _BOX = 9e-6.
_TIGHT = 1e-6
# A row whose l1 norm is below this fraction of the largest one is zero (rounding of h_f - h_y
# for equal outputs, or of an embedding that is zero): its margin is identically 0.
_ZERO_ROW = 1e-12
# The objective is scaled so that HiGHS' absolute gap tolerance (1e-6) means 1e-12 * max p.
_OBJ_SCALE = 1e6
# Beyond this many rows x coordinates the MILP is not built (memory); only the search runs.
_MILP_MAX_NONZEROS = 5_000_000


class _System(NamedTuple):
    """The margin system of the inputs with p(x) > 0 (index i = position in `inputs`)."""

    n: int  # coordinates of w = vec K (r_U r_E)
    inputs: np.ndarray  # (k,) the inputs x with p(x) > 0
    p: np.ndarray  # (k,) their frequencies
    rows: list  # per input: (r_i, n) l1-normalised rows a_xy (zero rows removed)
    raw: list  # per input: the same rows unnormalised (margins S[x, f] - S[x, y])
    strict: list  # per input: (r_i,) bool, y < f
    classes: list  # per input: (r_i,) the competing class y of each row
    forced_ties: list  # per input: classes y > f with a zero row (S[x, y] = S[x, f] always)
    never: np.ndarray  # (k,) bool: a zero strict row (a tie with an earlier class, always)


def _system(problem: Problem, sp) -> _System:
    p = np.asarray(problem.p, np.float64)
    f = np.asarray(problem.targets)
    F, H = sp.F, sp.H
    n = H.shape[1] * F.shape[1]
    inputs = np.flatnonzero(p > 0)
    blocks = []
    for x in inputs:
        ys = np.array([y for y in range(problem.M) if y != f[x]], dtype=np.int64)
        A = np.einsum("yi,j->yij", H[f[x]][None, :] - H[ys], F[x]).reshape(len(ys), n)
        blocks.append((ys, A))
    scale = max([np.abs(A).sum(1).max(initial=0.0) for _, A in blocks], default=0.0)
    rows, raw, strict, classes, ties, never = [], [], [], [], [], []
    for x, (ys, A) in zip(inputs, blocks):
        norm = np.abs(A).sum(1)
        zero = norm <= _ZERO_ROW * scale
        is_strict = ys < f[x]
        never.append(bool(np.any(zero & is_strict)))
        ties.append(ys[zero & ~is_strict])
        keep = ~zero
        raw.append(A[keep])
        rows.append(A[keep] / norm[keep][:, None])
        strict.append(is_strict[keep])
        classes.append(ys[keep])
    return _System(n, inputs, p[inputs], rows, raw, strict, classes, ties, np.array(never, dtype=bool))


def _stack(sy: _System, R) -> tuple:
    R = list(R)
    if not R:
        return np.zeros((0, sy.n)), np.zeros(0, bool)
    return np.vstack([sy.rows[i] for i in R]), np.concatenate([sy.strict[i] for i in R])


def _linprog(c, A_ub=None, b_ub=None, A_eq=None, b_eq=None, bounds=None):
    import scipy.optimize  # imported on use: it costs 0.25 s at start-up

    return scipy.optimize.linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")


def _feasible(sy: _System, R, hint: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """A w in the box with strict rows >= 1 and weak rows >= 0 for every input of R, or None."""
    if any(sy.never[i] for i in R):
        return None
    A, st = _stack(sy, R)
    if A.shape[0] == 0:
        return np.zeros(sy.n)
    b = st.astype(np.float64)
    if hint is not None and np.all(A @ hint >= b):
        return hint  # the current point already classifies the new input right: no LP
    res = _linprog(np.zeros(sy.n), A_ub=-A, b_ub=-b, bounds=[(-_BOX, _BOX)] * sy.n)
    return res.x if res.status == 0 else None


def _realise(sy: _System, R) -> Optional[tuple]:
    """A robust point for the set R: (w, ties) or None when R cannot be right together.

    Maximises the smallest normalised margin over the constraints of R that can be positive,
    holding the others (implicit equalities) at exactly 0 by projection. `ties` lists the
    pairs (x, y) that must tie. w is scaled so that the smallest untied margin is 1.
    """
    R = sorted(R)
    ties = [(int(sy.inputs[i]), int(y)) for i in R for y in sy.forced_ties[i]]
    if any(sy.never[i] for i in R):
        return None
    A, st = _stack(sy, R)
    raw = np.vstack([sy.raw[i] for i in R]) if R else np.zeros((0, sy.n))
    pairs = [(int(sy.inputs[i]), int(y)) for i in R for y in sy.classes[i]]
    m, n = A.shape
    if m == 0:
        return np.zeros(n), ties
    box = [(-1.0, 1.0)] * n
    # max t s.t. A w >= t: if t > 0 no constraint of R needs a tie (the generic case).
    res = _linprog(np.r_[np.zeros(n), -1.0], A_ub=np.c_[-A, np.ones(m)], b_ub=np.zeros(m), bounds=box + [(None, 1.0)])
    if res.status != 0:
        return None
    tight = np.zeros(m, bool)
    if -res.fun <= _TIGHT:
        # Find the implicit equalities: repeatedly maximise sum_i min(a_i . w, 1) over the
        # rows not yet shown to be positive, the others held >= 0. A row positive in some
        # feasible w is positive in their sum (a cone), so the rows never freed are exactly
        # those no w can make positive.
        pending = np.arange(m)
        while pending.size:
            done = np.setdiff1d(np.arange(m), pending)
            q = pending.size
            c = np.r_[np.zeros(n), -np.ones(q)]
            A_ub = np.vstack([np.c_[-A[pending], np.eye(q)], np.c_[-A[done], np.zeros((done.size, q))]])
            r = _linprog(c, A_ub=A_ub, b_ub=np.zeros(m), bounds=box + [(0.0, 1.0)] * q)
            if r.status != 0:
                return None
            freed = r.x[n:] > _TIGHT
            if not freed.any():
                break
            pending = pending[~freed]
        tight[pending] = True
        if np.any(st[tight]):
            return None  # a strict margin of R is forced to 0: R is not realisable
        free = ~tight
        A_ub = np.c_[-A[free], np.ones(free.sum())]
        A_eq = np.c_[A[tight], np.zeros(tight.sum())]
        res = _linprog(np.r_[np.zeros(n), -1.0], A_ub=A_ub, b_ub=np.zeros(free.sum()), A_eq=A_eq,
                       b_eq=np.zeros(tight.sum()), bounds=box + [(None, 1.0)])
        if res.status != 0 or (free.any() and -res.fun <= _TIGHT):
            return None
    w = res.x[:n]
    if tight.any():
        # The LP holds the ties to ~1e-9; project onto their null space to rounding level.
        At = A[tight]
        w = w - At.T @ np.linalg.lstsq(At @ At.T, At @ w, rcond=None)[0]
        ties += [pairs[j] for j in np.flatnonzero(tight)]
    margins = raw[~tight] @ w
    if margins.size:
        w = w / margins.min()
    return w, ties


class _Candidate(NamedTuple):
    zero_one: float
    K: np.ndarray
    scores: np.ndarray
    label: str


def _score(problem: Problem, sp, K: np.ndarray, ties, label: str) -> _Candidate:
    """The candidate's scores and the 0-1 loss they achieve under `particles.zero_one`.

    Ties the set needs (`ties`, exact in exact arithmetic) can come out of the float product
    F K^T H^T a few ulps apart; when that changes the count, the tied entries are written
    exactly equal (a change at rounding level) and the label says so.
    """
    S = np.asarray(sp.scores(K), np.float64)
    z = float(obs.zero_one(jnp.asarray(S), problem.p.astype(jnp.float64), problem.Y.astype(jnp.float64)))
    if ties:
        f = np.asarray(problem.targets)
        S2 = S.copy()
        size = max(1.0, np.abs(S).max(initial=0.0))
        for x, y in ties:
            if abs(S2[x, y] - S2[x, f[x]]) <= 1e-12 * size:
                S2[x, y] = S2[x, f[x]]
        z2 = float(obs.zero_one(jnp.asarray(S2), problem.p.astype(jnp.float64), problem.Y.astype(jnp.float64)))
        if z2 < z:
            return _Candidate(z2, K, S2, label + " (needed ties written exactly)")
    return _Candidate(z, K, S, label)


@contextlib.contextmanager
def _quiet_stdout():
    # HiGHS' MIP solver (scipy 1.17) prints debugging lines from C++ straight to file
    # descriptor 1 ("HighsMipSolverData::transformNewIntegerFeasibleSolution ..."), past
    # `disp=False`; silence the descriptor for the duration of the solve.
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real descriptor (e.g. a notebook)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


class _Milp(NamedTuple):
    R: Optional[list]  # the incumbent's right inputs (indices into sy.inputs), None if none
    value: float  # its 0-1 loss (sum of p over the others)
    lower: float  # HiGHS' dual bound, as a 0-1 loss
    status: str
    optimal: bool
    nodes: int


def _milp(sy: _System, time_limit: float) -> Optional[_Milp]:
    import scipy.optimize
    import scipy.sparse

    k, n = len(sy.p), sy.n
    counts = [r.shape[0] for r in sy.rows]
    if sum(counts) * (n + 1) > _MILP_MAX_NONZEROS:
        return None
    blocks = []
    lb = []
    for i in range(k):
        b = sy.strict[i].astype(np.float64)
        Z = np.zeros((counts[i], k))
        Z[:, i] = -(b + _BOX)
        blocks.append(np.c_[sy.rows[i], Z])
        lb.append(np.full(counts[i], -_BOX))
    c = np.r_[np.zeros(n), -sy.p * (_OBJ_SCALE / sy.p.max())]
    ub_z = np.where(sy.never, 0.0, 1.0)
    bounds = scipy.optimize.Bounds(np.r_[np.full(n, -_BOX), np.zeros(k)], np.r_[np.full(n, _BOX), ub_z])
    cons = []
    if sum(counts):
        A = scipy.sparse.csr_array(np.vstack(blocks))
        cons = [scipy.optimize.LinearConstraint(A, np.concatenate(lb), np.inf)]
    with _quiet_stdout():
        res = scipy.optimize.milp(c, integrality=np.r_[np.zeros(n), np.ones(k)], bounds=bounds, constraints=cons,
                                  options={"time_limit": float(time_limit), "mip_rel_gap": 0.0})
    status = {0: "optimal", 1: "stopped at the time or node limit", 2: "infeasible", 3: "unbounded"}.get(
        res.status, "solver failure")
    total = float(sy.p.sum())
    R, value = None, total
    if res.x is not None:
        R = list(np.flatnonzero(res.x[n:] > 0.5))
        value = total - float(sy.p[R].sum())
    dual = res.get("mip_dual_bound")
    # Undo the objective's scaling: L01 = sum p - sum p z.
    lower = max(0.0, total + dual * sy.p.max() / _OBJ_SCALE) if dual is not None and np.isfinite(dual) else 0.0
    nodes = int(res.get("mip_node_count") or 0)
    return _Milp(R, value, lower, status, res.status == 0 and R is not None, nodes)


def _local_search(sy: _System, seeds: list, restarts: int, rng: np.random.Generator, deadline: float):
    """Greedy insertion with restarts and a swap move, in the space of sets of right inputs.

    Each restart visits the inputs that can be right alone in an order drawn from p
    (Plackett-Luce: heavier inputs tend to come first; restart 0 uses the exact p order)
    and adds an input whenever the set stays realisable (an LP, skipped when the current
    point already classifies it right or a subset/superset already answered). Then, for each
    of the three heaviest inputs left out, it forces that input in and re-inserts the others
    in order, keeping the result if it weighs more. Each distinct `seed` (a set of inputs
    right together, e.g. under a top-frequency scheme) starts one more greedy pass. Stops
    at `deadline` (time.monotonic()). Returns (the best set, LPs solved, the mass of the
    inputs that cannot be right even alone: a lower bound on min L01).
    """
    lps = [0]
    feasible_sets: list = []  # (frozenset, w): every subset is feasible too
    infeasible_sets: list = []  # every superset is infeasible too

    def feasible(R, hint=None):
        key = frozenset(R)
        if any(bad <= key for bad in infeasible_sets):
            return None
        for good, w in feasible_sets:
            if key <= good:
                return w
        out = _feasible(sy, R, hint)
        if out is None:
            lps[0] += 1
            infeasible_sets.append(key)
        else:
            lps[0] += out is not hint
            feasible_sets.append((key, out))
        return out

    alone = [int(i) for i in np.argsort(-sy.p, kind="stable") if feasible([int(i)]) is not None]

    def greedy(start, order):
        R = list(start)
        w = feasible(R) if R else np.zeros(sy.n)
        if w is None:
            return []
        for i in order:
            if i in R:
                continue
            w2 = feasible(R + [i], w)
            if w2 is not None:
                R, w = R + [i], w2
        return R

    def mass(R):
        return float(sy.p[list(R)].sum())

    best: list = []
    starts = []
    for s in {frozenset(int(i) for i in s) for s in seeds if len(s)}:
        starts.append((sorted(s, key=lambda i: -sy.p[i]), alone, False))
    for r in range(restarts):
        if r == 0:
            order = alone
        else:
            keys = np.log(sy.p[alone]) + rng.gumbel(size=len(alone))
            order = [alone[j] for j in np.argsort(-keys, kind="stable")]
        starts.append(([], order, True))
    for start, order, swap in starts:
        if time.monotonic() > deadline:
            break
        R = greedy(start, order)
        for i in [j for j in alone if j not in R][:3] if swap else []:
            R2 = greedy([i], [j for j in alone if j in R] + [j for j in order if j not in R])
            if mass(R2) > mass(R):
                R = R2
        if mass(R) > mass(best):
            best = R
    lonely = float(sy.p.sum()) - mass(alone)
    return best, lps[0], max(lonely, 0.0)


def _top_frequency_K(problem: Problem, sp) -> list:
    """K of W* = sum_{x in top r} u_{f*(x)} e_x^T for r = 0..N: sum_{x in top r} h_{f*(x)} f_x^T
    (the span coordinates of u_y and e_x are h_y and f_x), as `top_frequency_scores` orders p."""
    order = np.argsort(-np.asarray(problem.p), kind="stable")
    f = np.asarray(problem.targets)
    K = np.zeros((sp.H.shape[1], sp.F.shape[1]))
    out = [K]
    for x in order:
        K = K + np.outer(sp.H[f[x]], sp.F[x])
        out.append(K)
    return out


