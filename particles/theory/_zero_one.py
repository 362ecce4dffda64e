"""The smallest achievable 0-1 loss, min_W L01(W) (paper-notes §3.4), exact where it can be.

Which inputs can be right together is a question about a system of linear inequalities. In
the reduced coordinates of `_span` (S = F K^T H^T, w = vec K) input x, with target f, is
right under `particles.zero_one`'s convention (argmax ties go to the FIRST class) iff

    a_xy . w > 0  for every y < f  (strict: a tie with an earlier class loses),
    a_xy . w >= 0 for every y > f  (weak: a tie with a later class wins),

with a_xy = vec((h_f - h_y) f_x^T), so that a_xy . w = S[x, f] - S[x, y]. The conditions are
invariant under w -> c w (c > 0), so the strict ones can be normalised to >= 1.

The mixed-integer program (one binary z_x per input, "x is right"):

    maximise sum_x p(x) z_x  over w, z in {0, 1}^N,
    a_xy . w >= b_xy - (b_xy + B) (1 - z_x)   (b_xy = 1 strict, 0 weak),
    |w_i| <= B,

with every row a_xy scaled to unit l1 norm, so |a_xy . w| <= ||w||_inf <= B and the big-M
(b_xy + B) switches a row off exactly when z_x = 0 (then it reads a_xy . w >= -B, always true
in the box); it is the smallest constant that does. The box only fixes the scale: the answer
is exact under the assumption that some optimal W has all its strict margins
a_xy . w >= ||w||_inf / B, i.e. none of the optimal strict margins is thinner than 1/B = 1e-5 of
the largest coordinate (with l1-normalised rows). HiGHS (`scipy.optimize.milp`) solves it
with a certificate: its dual bound is a lower bound on min L01 (under that assumption), its
incumbent a set of inputs that can be right together.

The incumbent's set R is then realised without big-M: an LP finds the constraints of R that
no W can make positive (implicit equalities: the ties the optimum needs, e.g. for opposite
embeddings e_x = -e_x'), and the point that maximises the smallest remaining normalised
margin. Its scores are recomputed and scored by `particles.zero_one`: the value reported is
always the one the returned scores achieve.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import _observables as obs
from .. import _validate as v
from .._problem import Problem
from ._span import span
from ._underparameterized import Solution, _solution, ce_minimizer

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


def best_zero_one(
    problem: Problem,
    *,
    time_limit: Optional[float] = None,
    max_exact: int = 40,
    restarts: int = 30,
    key=None,
) -> Solution:
    """The smallest achievable 0-1 loss min_W L01(W), ties to the first class.

    - Up to `max_exact` inputs with p(x) > 0 (default 40; any M and d): exact, by the
      mixed-integer program of this module's docstring (one binary per input "x is right",
      margins in the span's reduced coordinates, strict margins normalised to >= 1 with the
      coordinates boxed to |w_i| <= 1e5, big-M 1 + 1e5 on l1-normalised rows), solved by
      HiGHS (`scipy.optimize.milp`) to a proven optimum. The answer is exact under the
      assumption that some optimal W has every strict margin at least 1e-5 of its largest
      reduced coordinate (on unit-l1 rows), and up to HiGHS' tolerances (gap 1e-12 max p).
      Ties are handled as `particles.zero_one` counts them: a tie with a later class
      counts as right, so inputs may be right only through ties (e.g. e_x = -e_x' with the
      same target 0). `exact=True` only when HiGHS proved the optimum within `time_limit`
      and the returned scores achieve it. Measured on a shared 2-core machine (Gaussian unit
      embeddings, Zipf 1.5): N = 20, M = 4, d = 5 in 0.4 s; N = 40 with (M, d) = (2, 2),
      (3, 3), (4, 5), (5, 10), (10, 30) in 0.1-1.5 s, (20, 10) in 14 s, (10, 5) in 12-75 s;
      (40, 10) took 49 s on one draw and hit the 60 s limit on another (then `bound` is
      "upper" and `status` says so).
    - Beyond, or when HiGHS stops at `time_limit` first: the best of (i) a local search
      with restarts over sets of inputs that can be right together (greedy insertion in
      p-weighted random orders, `restarts` restarts, plus swap moves; see `_local_search`),
      (ii) the MILP's incumbent within `time_limit` (when it fits in memory), (iii) the
      top-frequency schemes W* = sum_{x <= r} u_{f*(x)} e_x^T (r = 0..N) and W_CE when
      finite. That is an upper bound on the minimum; `lower` is the MILP's dual bound (a
      certified lower bound, same assumption) or, without it, the mass of the inputs that
      cannot be right even alone.

    Every reported value is that of the returned `scores` under `particles.zero_one`.

    **Arguments:**

    - `problem`: a [`Problem`][] (Grams suffice; W is returned when E and U are known).
    - `time_limit`: seconds for HiGHS and, separately, for the local search when it runs
      (so at most about twice this overall); default 60 up to `max_exact` inputs, 10 beyond.
      0 skips HiGHS (the local search then gets 1 s).
    - `max_exact`: the number of inputs (p > 0) up to which the MILP is the method.
    - `restarts`: restarts of the local search (used beyond `max_exact` or after a time-out).
    - `key`: PRNG key for the local search's random orders (default PRNGKey(0)).

    **Returns:** a [`Solution`][]: `scores` (scaled so that the smallest margin of a right
    input that needs no tie is 1), `zero_one` (their 0-1 loss), `bound` = "exact" or
    "upper", `lower` (a certified lower bound on min L01; equal to `zero_one` when exact),
    `gap` = zero_one - lower, `status` (HiGHS' outcome: "optimal", "stopped at the time or
    node limit", "not run", ...), `exact` (bound == "exact"), `iterations` (branch-and-bound
    nodes plus the local search's LPs), `method` (which candidate won).

    >>> import particles as pt
    >>> from particles import theory
    >>> E, U = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]
    >>> P = pt.Problem.from_embeddings(E, U, [0.4, 0.4, 0.2], [0, 0, 1])
    >>> best = theory.best_zero_one(P)  # inputs 0 and 1 are right only by tying
    >>> float(best.zero_one), best.bound, float(best.lower)
    (0.0, 'exact', 0.0)
    """
    max_exact = v.check_count("max_exact", max_exact, 0)
    restarts = v.check_count("restarts", restarts, 0)
    if time_limit is not None:
        try:
            ok = np.isfinite(float(time_limit)) and float(time_limit) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            v.fail("time_limit", time_limit, "it must be a finite number of seconds >= 0")
    sp = span(problem)
    sy = _system(problem, sp)
    small = len(sy.inputs) <= max_exact
    limit = float(time_limit) if time_limit is not None else (60.0 if small else 10.0)
    shape = (sp.H.shape[1], sp.F.shape[1])
    cands: list[_Candidate] = []
    run = {"iterations": 0, "lower": 0.0, "status": "not run", "proven": None}

    def add_set(R, label):
        got = _realise(sy, R)
        if got is not None:
            w, ties = got
            cands.append(_score(problem, sp, w.reshape(shape), ties, label))

    def milp(label):
        mi = _milp(sy, limit)
        if mi is None:
            run["status"] = "not run (too large)"
            return
        run["iterations"] += mi.nodes
        run["lower"], run["status"] = max(run["lower"], mi.lower), mi.status
        if mi.R is not None:
            add_set(mi.R, label)
        if mi.optimal:
            run["proven"] = mi.value  # HiGHS' optimum (under the box assumption)

    if small and limit > 0:
        milp("milp (HiGHS)")
    proven = run["proven"]
    if not (proven is not None and cands and cands[-1].zero_one <= proven + 1e-12):
        # The search: top-frequency schemes and W_CE (candidates, and seeds), the local
        # search, and beyond max_exact the MILP for its bound and incumbent.
        fixed = [(K, f"top-{r}") for r, K in enumerate(_top_frequency_K(problem, sp))]
        try:
            fixed.append((np.asarray(ce_minimizer(problem).K, np.float64), "W_CE"))
        except ValueError:
            pass  # no finite minimizer (separable in part)
        seeds = []
        for K, label in fixed:
            c = _score(problem, sp, K, [], f"search (won: {label})")
            cands.append(c)
            seeds.append(np.flatnonzero(np.asarray(obs.correct(jnp.asarray(c.scores), problem.Y))[sy.inputs]))
        key = jax.random.PRNGKey(0) if key is None else key
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().astype(np.uint32))
        R, lps, lonely = _local_search(sy, seeds, restarts, rng, time.monotonic() + max(limit, 1.0))
        run["iterations"] += lps
        run["lower"] = max(run["lower"], lonely)
        add_set(R, "search (won: local search)")
        if not small and limit > 0:
            milp("search (won: milp incumbent)")
    best = min(cands, key=lambda c: c.zero_one)
    upper, proven, lower = best.zero_one, run["proven"], run["lower"]
    exact = bool((proven is not None and upper <= proven + 1e-12) or upper <= lower + 1e-15)
    method = best.label if exact or best.label.startswith("search") else f"search (won: {best.label})"
    # The value reported is the one the returned scores achieve, in the problem's dtype.
    dt = problem.dtype
    upper = float(obs.zero_one(jnp.asarray(best.scores, dt), problem.p, problem.Y))
    exact = exact and upper == best.zero_one
    lower = upper if exact else min(lower, upper)
    return _solution(problem, sp, best.K, run["iterations"], exact, method, scores=best.scores,
                     bound="exact" if exact else "upper", lower=jnp.asarray(lower, dt),
                     gap=jnp.asarray(upper - lower, dt), status=run["status"])


def zero_one_gap(problem: Problem, *, interval: bool = False, **kwargs):
    """The gap L01(W_CE) - min_W L01(W): how much 0-1 loss cross-entropy gives up.

    Exact when [`best_zero_one`][] is (`bound == "exact"`: up to 40 inputs by default).
    Otherwise min L01 is only known to lie in [lower, upper] (`best_zero_one`'s `lower` and
    `zero_one`), and the value returned, L01(W_CE) - upper, is a lower bound on the gap.
    Raises like [`ce_minimizer`][] when there is no finite minimizer.

    **Arguments:**

    - `problem`: a [`Problem`][].
    - `interval`: return (low, high), the interval that holds the gap, instead of one value
      (low == high when exact).
    - `**kwargs`: passed to [`best_zero_one`][].

    **Returns:** a float64 scalar (or a pair of them).

    >>> import particles as pt
    >>> from particles import theory
    >>> E = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]
    >>> P = pt.Problem.from_embeddings(E, [[1.0, 0.0], [0.0, 1.0]], [0.5, 0.3, 0.2], [0, 1, 0])
    >>> round(float(theory.zero_one_gap(P)), 6)  # L01(W_CE) = 0.5; min L01 = 0.2 (inputs 0, 1 right)
    0.3
    """
    ce = ce_minimizer(problem)
    best = best_zero_one(problem, **kwargs)
    low = ce.zero_one - best.zero_one
    if not interval:
        return low
    return low, ce.zero_one - best.lower
