"""The N-particle view's computations: padded problems, one `particles.gd` call per move.

The system is built from its Gram matrices in numpy and padded to a size of `PAD_SIZES`
(see `_compute`), so a new N, M or d never changes a compiled shape:

- equicorrelated inputs: `particles.equicorrelated` (numpy geometry for a number α, nothing
  to compile);
- random sphere embeddings: the draws of `particles.random_sphere(seed, N, M, d)` read off
  one fixed-size draw per seed (JAX's partitionable threefry makes the first k numbers of a
  draw of any length the same), normalised in numpy. [`sphere_is_exact`][] checks this
  against `random_sphere` once at start-up; where it does not hold (another JAX PRNG
  setting), the view calls `random_sphere` itself, which compiles once per shape.

Frequencies are Zipf, p(x) ∝ x^(−a), as `particles.zipf`. The comparison with theory
(`analysis.compare`) runs on the unpadded problem built by the library's own constructors.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

import particles as pt

from . import _compute as c
from ._inputs import D_MAX, M_MAX, N_MAX, ManySettings


def zipf(n: int, a: float) -> np.ndarray:
    """p(x) ∝ x^(−a), x = 1..n (`particles.zipf` in numpy, equal to rounding; no kernel per n)."""
    w = np.arange(1, n + 1, dtype=np.float64) ** (-float(a))
    return w / w.sum()


@functools.lru_cache(maxsize=8)
def _draws(seed: int):
    kE, kU = jax.random.split(jax.random.key(seed))
    return (np.asarray(jax.random.normal(kE, (N_MAX * D_MAX,), jnp.float64)),
            np.asarray(jax.random.normal(kU, (M_MAX * D_MAX,), jnp.float64)))


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def sphere_embeddings(seed: int, n: int, m: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(E, U): the embeddings of `particles.random_sphere(seed, n, m, d)`, without a compile."""
    fe, fu = _draws(seed)
    return _unit_rows(fe[: n * d].reshape(n, d)), _unit_rows(fu[: m * d].reshape(m, d))


@functools.lru_cache(maxsize=1)
def sphere_is_exact() -> bool:
    """Whether [`sphere_embeddings`][] reproduces `particles.random_sphere` (to 1e-12).

    Checked on the view's default shape (each new shape costs `random_sphere` a compile).
    """
    for n, m, d in ((ManySettings.n, ManySettings.m, ManySettings.d),):
        E, U = sphere_embeddings(0, n, m, d)
        P = pt.random_sphere(0, n, m, d)
        if not (np.allclose(E, np.asarray(P.E), atol=1e-12) and np.allclose(U, np.asarray(P.U), atol=1e-12)):
            return False
    return True


def library_problem(s: ManySettings):
    """The unpadded problem of `s`, from the library's constructors (as `simulate.py` builds it)."""
    p = pt.zipf(s.n, s.zipf)
    targets = np.arange(s.n) % s.m
    if s.geometry == "sphere":
        return pt.random_sphere(s.seed, s.n, s.m, s.d, p=p, targets=targets)
    return pt.equicorrelated(s.n, s.corr, p, s.m, d=s.d, targets=targets)


def grams(s: ManySettings) -> tuple[np.ndarray, np.ndarray]:
    """(G_E, G_U) of the settings' embeddings, in numpy."""
    if s.geometry == "sphere":
        if sphere_is_exact():
            E, U = sphere_embeddings(s.seed, s.n, s.m, s.d)
        else:
            P = pt.random_sphere(s.seed, s.n, s.m, s.d)
            E, U = np.asarray(P.E), np.asarray(P.U)
        return E @ E.T, U @ U.T
    P = pt.equicorrelated(s.n, s.corr, zipf(s.n, s.zipf), s.m, d=s.d)
    return np.asarray(P.G_E), np.asarray(P.G_U)


def padded_problem(s: ManySettings, size: Optional[int] = None):
    """The settings' system padded to `size` inputs and classes (see the module docstring)."""
    n, m = s.n, s.m
    size = size or c.pad_size(max(n, m))
    G_E, G_U = grams(s)
    p = np.zeros(size)
    p[:n] = zipf(n, s.zipf)
    Y = np.zeros((size, size))
    Y[np.arange(n), np.arange(n) % m] = 1.0
    Y[n:, 0] = 1.0  # a padded input needs a target; with p = 0 it never counts
    GE = np.zeros((size, size))
    GE[:n, :n] = G_E
    GU = np.zeros((size, size))
    GU[:m, :m] = G_U
    S0 = np.full((size, size), c.PAD_SCORE)
    S0[:, :m] = 0.0
    a = jnp.asarray
    return pt.Problem(p=a(p), Y=a(Y), G_E=a(GE), G_U=a(GU), S0=a(S0), structure_E="dense", structure_U="dense")


@dataclasses.dataclass
class ManyResult:
    """What the N-particle view draws; numpy arrays, rows 0..steps, real tokens only."""

    settings: ManySettings
    padded: object
    traj: object  # the padded run (for the comparison)
    steps: np.ndarray
    loss: np.ndarray
    zero_one: np.ndarray
    margins: np.ndarray  # (T, N)
    p: np.ndarray
    events: dict
    spikes: list
    status: str


def run_many(s: ManySettings) -> ManyResult:
    """One GD run of the N-particle settings `s` on the padded problem (no compile per move).

    **Returns:** a [`ManyResult`][].
    """
    padded = padded_problem(s)
    traj = pt.gd(padded, s.lr, c.bucket(s.steps, c.MANY_BUCKETS))
    events = c.events_of(traj, s.steps)
    events["oscillations"] = events["oscillations"][: s.n]
    events["sign_flips"] = events["sign_flips"][: s.n]
    k = s.steps + 1
    steps, loss = np.asarray(traj.steps)[:k], np.asarray(traj.loss)[:k]
    bad = int(events["first_bad_step"])
    good = k if bad < 0 else bad
    status = "" if bad < 0 else f"the run went non-finite at step {bad}: drawn up to the step before"
    return ManyResult(s, padded, traj, steps, loss, np.asarray(traj.zero_one)[:k],
                      np.asarray(traj.margins)[:k, : s.n], zipf(s.n, s.zipf), events,
                      c._spikes(steps[:good], loss[:good]), status)


def comparison(r: ManyResult):
    """`analysis.compare` for the run `r`, on the unpadded problem of the library.

    The saved rows come from the padded run; the final scores (at the asked-for step, not the
    bucket's end) from a second `particles.gd` call saving steps (0, 1, steps), whose gaps are
    dynamic (one compilation for every step count).

    **Returns:** (the `Comparison`, λ_max at the start, the stability ratio η λ_max / 2 there).
    """
    from particles import analysis as pa
    from particles import theory as th

    s = r.settings
    problem = library_problem(s)
    k = s.steps + 1
    save = [0, 1, s.steps] if s.steps > 2 else list(range(s.steps + 1))
    end = pt.gd(r.padded, s.lr, s.steps, save_steps=np.asarray(save))
    t = r.traj
    traj = pt.Trajectory(t=np.asarray(t.t)[:k], steps=np.asarray(t.steps)[:k], loss=r.loss, zero_one=r.zero_one,
                      accuracy=np.asarray(t.accuracy)[:k], margins=r.margins,
                      final_scores=np.asarray(end.final_scores)[: s.n, : s.m], status=np.asarray(end.status),
                      first_bad_step=np.asarray(end.first_bad_step), info=t.info)
    lam0 = float(th.sharpness(problem, problem.S0))
    return pa.compare(problem, traj, lr=s.lr), lam0, s.lr * lam0 / 2
