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

import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from .. import _observables as obs
from .. import _validate as v
from .._problem import Problem
from ._span import span
from ._underparameterized import Solution, _solution, ce_minimizer

from ._zero_one_parts import _Candidate, _local_search, _milp, _realise, _score, _system, _top_frequency_K


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
