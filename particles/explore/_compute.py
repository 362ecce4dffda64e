"""The explorer's computations: `particles.gd`/`flow`, the events and the theory, bucketed.

Nothing here re-implements the dynamics: each run is one call of `particles.gd` (or
`particles.flow`) on a problem built by the library's constructors. What this module adds is
shape discipline, so that a slider move never compiles:

- **Steps** are rounded up to a bucket (`TWO_BUCKETS`, `MANY_BUCKETS`): the run goes to the
  bucket's end and the rows past the asked-for step are dropped. A GD step does not depend
  on the steps after it, so the kept rows are those of `particles.gd(problem, lr, steps)`.
- **Sizes** (N-particle view) are padded to `PAD_SIZES`: padded inputs have p = 0 and a zero
  row of G_E (they exert no force and feel none), padded classes have a zero row of G_U and
  scores `PAD_SCORE` (probability 0: no force, never the best competitor). The margins, loss
  and 0-1 loss of the real tokens are those of the unpadded problem to rounding.
- **Events** (full accuracy, spikes, oscillations) are the one reducer of
  `particles.events`, folded over the saved rows in one compiled `lax.scan` whose rows past
  the asked-for step are masked (numpy's loop over 1,000 rows costs more than the run).

Every parameter (α, p₁, η, the step count, γ₀, the embeddings) is an array argument of these
compiled calls; [`warm_up`][] compiles each bucket once, at start-up.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import particles as pt
from particles import events as ev
from particles import theory as th

from ._inputs import TwoSettings

TWO_BUCKETS = (1000, 10_000)
MANY_BUCKETS = (1000, 5000)
PAD_SIZES = (16, 64)
PAD_SCORE = -1e30  # exp(PAD_SCORE - max) is exactly 0: a padded class never gets mass
LANDSCAPE_GRID = 120
NICE = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)  # half-widths of the γ-plane window, × 10^k: ≤ 1.33× the need
ASYMPTOTE_POINTS = 64
TOL = ev.Tolerances.for_run("gd", "float64")  # the resolution `analysis.events` uses for a GD run


def bucket(steps: int, buckets) -> int:
    """The smallest bucket >= steps (ValueError past the largest)."""
    for b in buckets:
        if steps <= b:
            return b
    raise ValueError(f"steps={steps} is not allowed: at most {buckets[-1]}.")


def pad_size(n: int) -> int:
    """The padded size of the N-particle view for a system of size n (N or M)."""
    return bucket(n, PAD_SIZES)


# ------------------------------------------------------------------ events
@functools.partial(jax.jit, static_argnames=("tol",))
def _fold_events(steps, loss, margins, full, last, tol: ev.Tolerances):
    """`particles.events` over rows 0..last (rows after `last` are masked, not folded)."""
    c0 = ev.init(ev.row(steps[0], loss[0], margins[0], full[0]), tol)

    def body(c, r):
        k, s, L, m, f = r
        new = ev.update(c, ev.row(s, L, m, f), tol)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(k <= last, a, b), new, c), None

    idx = jnp.arange(1, loss.shape[0])
    c, _ = jax.lax.scan(body, c0, (idx, steps[1:], loss[1:], margins[1:], full[1:]))
    return ev.result(c)


def events_of(traj, last: int) -> dict:
    """The events of `traj`'s rows 0..last, as numpy values named as `particles.events.RESULTS`.

    Full accuracy is `zero_one == 0`, as in `particles.analysis.events` (exact: 0 iff every
    input with p > 0 is right), with the same tolerances, so the numbers equal
    `analysis.first_full_accuracy(particles.gd(problem, lr, last))` and friends.
    """
    out = _fold_events(traj.steps, traj.loss, traj.margins, traj.zero_one == 0, jnp.asarray(last), TOL)
    return {k: np.asarray(v) for k, v in out.items()}


def _spikes(steps: np.ndarray, loss: np.ndarray) -> list[dict]:
    with np.errstate(all="ignore"):
        return ev.spikes(steps, loss, TOL)


# ------------------------------------------------------------- two particles
@jax.jit
def _two_theory(corr, p1, lr, t):
    # One compiled call for every prediction (six separate ones cost six compiles at start-up).
    return dict(first_step=th.two_particles_first_step(lr, corr, p1), forgets=th.two_particles_forgets(corr, p1),
                lambda0=th.two_particles_sharpness0(corr, p1), spike_lr=th.two_particles_spike_lr(corr, p1),
                wedge=th.two_particles_wedge_angle(corr),
                asymptote=th.two_particles_margin_asymptote(t, jnp.full_like(t, lr), jnp.full_like(t, corr),
                                                            jnp.full_like(t, p1)))


@eqx.filter_jit
def _two_rows(problem, steps, loss, margins, zero_one, scores, last, lr):
    # The events and the sharpness along the run in one compiled call. Arrays only: a
    # Trajectory's metadata (with the rate in it) is static and would compile per rate.
    events = _fold_events(steps, loss, margins, zero_one == 0, last, TOL)
    return events, th.two_class_sharpness(problem, scores) * lr / 2


# `two_particles` under jit: one compiled call instead of a dozen eager operations to compile.
_two_particles = jax.jit(pt.two_particles)


def two_problem(corr: float, p1: float, gamma0=(0.0, 0.0)):
    """`particles.two_particles(corr, p1)` started at γ₀ instead of W = 0.

    γ = Wᵀ(u₁ − u₂) with U = I: W₀ has rows γ₀/2 and −γ₀/2, so S₀[x] = (γ₀·e_x/2, −γ₀·e_x/2),
    the convention of `analysis.landscape`.
    """
    problem = _two_particles(jnp.asarray(corr, jnp.float64), jnp.asarray(p1, jnp.float64))
    g = np.asarray(gamma0, np.float64)
    if not np.any(g):
        return problem
    W0 = np.stack([g / 2, -g / 2])
    S0 = np.asarray(problem.E) @ W0.T  # U = I
    return eqx.tree_at(lambda P: (P.S0, P.W0), problem, (jnp.asarray(S0), jnp.asarray(W0)))


@dataclasses.dataclass
class TwoResult:
    """Everything the two-particle view draws; arrays are numpy, rows 0..steps."""

    settings: TwoSettings
    problem: object
    steps: np.ndarray
    loss: np.ndarray
    zero_one: np.ndarray
    margins: np.ndarray  # (T, 2)
    gamma: np.ndarray  # (T, 2)
    ratio: np.ndarray  # η λ_max(S_t) / 2 along the run
    events: dict
    spikes: list
    status: str  # "" when finite, else what went wrong
    theory: dict
    flow: Optional[dict] = None  # {"t", "margins", "gamma"} when asked for and compiled


def run_two(s: TwoSettings, with_flow: bool = False) -> TwoResult:
    """GD (and optionally the gradient flow) for the two-particle settings `s`.

    **Arguments:** `s` validated settings; `with_flow` also solve the flow to t₁ = η·steps
    (`particles.flow`, 201 log-spaced times), as `simulate.py` does.

    **Returns:** a [`TwoResult`][].
    """
    problem = two_problem(s.corr, s.p1, s.gamma0)
    B = bucket(s.steps, TWO_BUCKETS)
    traj = pt.gd(problem, s.lr, B, save_scores=True)
    events, ratio = _two_rows(problem, traj.steps, traj.loss, traj.margins, traj.zero_one, traj.scores,
                              jnp.asarray(s.steps), jnp.asarray(s.lr, jnp.float64))
    events = {k: np.asarray(v) for k, v in events.items()}
    n = s.steps + 1
    ratio = np.asarray(ratio)[:n]
    steps, loss = np.asarray(traj.steps)[:n], np.asarray(traj.loss)[:n]
    margins = np.asarray(traj.margins)[:n]
    bad = int(events["first_bad_step"])
    status = "" if bad < 0 else f"the run went non-finite at step {bad}: drawn up to the step before"
    good = n if bad < 0 else bad
    from particles import analysis as pa

    gamma = np.full_like(margins, np.nan)
    gamma[:good] = pa.gamma_of_margins(problem, margins[:good])
    result = TwoResult(s, problem, steps, loss, np.asarray(traj.zero_one)[:n], margins, gamma, ratio, events,
                       _spikes(steps[:good], loss[:good]), status, two_theory(s))
    if with_flow:
        result.flow = run_two_flow(problem, s)
    return result


def run_two_flow(problem, s: TwoSettings) -> dict:
    """The gradient flow of `problem` to t₁ = η·steps: {"t", "margins", "gamma", "message"}."""
    from particles import analysis as pa

    traj = pt.flow(problem, s.lr * s.steps)
    t, m = np.asarray(traj.t), np.asarray(traj.margins)
    ok = np.all(np.isfinite(m), axis=1)
    gamma = np.full_like(m, np.nan)
    gamma[ok] = pa.gamma_of_margins(problem, m[ok])
    return dict(t=t, margins=m, gamma=gamma, message="" if traj.ok else f"flow: {traj.message}")


def two_theory(s: TwoSettings) -> dict:
    """The paper's two-particle predictions for `s` (paper notes §3.3).

    First-step margins and the forgetting criterion α > p₂/p₁ hold from W = 0; the sharpness
    λ_max at W = 0 gives the stability limit 2/λ_max; the log-t asymptotes
    m_x ≈ log(2(1 − α)η p_x t) hold for |α| < 1.
    """
    t = np.geomspace(1.0, max(float(s.steps), 2.0), ASYMPTOTE_POINTS)
    f = jnp.float64
    got = {k: np.asarray(v) for k, v in _two_theory(f(s.corr), f(s.p1), f(s.lr), jnp.asarray(t)).items()}
    lam0 = float(got["lambda0"])
    out = dict(first_step=got["first_step"], forgets=bool(got["forgets"]), lambda0=lam0, limit=2.0 / lam0,
               spike_lr=float(got["spike_lr"]), wedge_deg=float(np.degrees(got["wedge"])), from_zero=not any(s.gamma0))
    if abs(s.corr) < 1:
        out["asymptote_t"], out["asymptote"] = t, got["asymptote"]
    return out


def landscape(problem, extent, grid: int = LANDSCAPE_GRID):
    """`analysis.landscape` on the square `extent` (x0, x1, y0, y1), e.g. a `window`.

    **Returns:** (g1, g2, ce, zero_one).
    """
    from particles import analysis as pa

    return pa.landscape(problem, extent, grid)


def window(gammas) -> tuple:
    """The square (x0, x1, y0, y1) around 0 and the paths `gammas`: half-width the first of
    `NICE` × 10^k at or above 0.55 × the paths' span (and ≥ 1), centre on a grid of a quarter of it.

    Snapped so that a small move of a slider keeps the same window (and the page does not redraw
    its plane); the window always holds the paths.
    """
    pts = [np.zeros((1, 2))] + [np.asarray(g)[np.all(np.isfinite(g), axis=1)] for g in gammas if g is not None]
    pts = np.concatenate(pts)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    need = max(1.0, 0.55 * float(np.max(hi - lo)))
    k = math.floor(math.log10(need))
    # Rounding the centre moves it by up to half / 8: take the next nice size until the paths fit.
    for half in (m * 10.0**e for e in (k, k + 1, k + 2) for m in NICE):
        center = np.round((lo + hi) / 2 / (half / 4)) * (half / 4)
        if half >= need and np.all(hi <= center + half) and np.all(lo >= center - half):
            break
    return (float(center[0] - half), float(center[0] + half), float(center[1] - half), float(center[1] + half))
