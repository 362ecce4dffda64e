"""The two-particle margin-map kernel: the paper's grid of GD runs at the speed of the map.

A sweep over the paper's time-to-accuracy grid (10 × 10 × 10 two-particle runs × 1000
steps) needs a few numbers per run, not a trajectory. For two particles the margins
(m1, m2) carry the whole state (paper-notes §3.3), so this kernel iterates the margin map
of `particles.theory` for every run at once in one `lax.scan`, carrying only the margins
and the events. It is 55× batched numpy and gives the same events as the generic sweep
cell (tests/test_sweep.py holds them equal on the paper's grid).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from . import _validate as v
from ._driver import int_dtype
from ._problem import default_dtype
from ._status import Status
from .theory._two_particles import two_particles_coefficients, two_particles_margin_map

KERNEL_METRICS = ("first_full_accuracy", "full_accuracy_from", "final_loss", "final_min_margin", "status",
                  "first_bad_step")
"""The events the kernel carries (named as in `particles.sweep`'s metrics)."""


def _full(m1, m2, p1, p2):
    # argmax ties go to class 0 = f*(token 1): token 1 is right at m1 = 0, token 2 is not at
    # m2 = 0; a token with p = 0 is outside the loss and does not count.
    return ((m1 >= 0) | (p1 == 0)) & ((m2 > 0) | (p2 == 0))


@eqx.filter_jit
def _kernel(corr, p1, lr, steps: int):
    # Runs are flattened to one axis (a 3-D batch ran 4x slower on CPU) and the four
    # coefficients of the map hoisted out of the loop.
    shape = corr.shape
    corr, p1, lr = corr.ravel(), p1.ravel(), lr.ravel()
    p2 = 1 - p1
    coef = two_particles_coefficients(lr, corr, p1)
    zero = jnp.zeros_like(corr)
    full0 = _full(zero, zero, p1, p2)
    never = jnp.full(corr.shape, -1, int_dtype())
    first0 = jnp.where(full0, 0, never)

    def step(carry, k):
        m1, m2, first, since = carry
        m1, m2 = two_particles_margin_map(m1, m2, *coef)
        full = _full(m1, m2, p1, p2)
        first = jnp.where((first < 0) & full, k, first)
        since = jnp.where(full, jnp.where(since < 0, k, since), -1)
        return (m1, m2, first, since), None

    ks = jnp.arange(1, steps + 1, dtype=int_dtype())
    (m1, m2, first, since), _ = jax.lax.scan(step, (zero, zero, first0, first0), ks)
    # With two classes and U = I the loss of token x is log(1 + e^{-m_x}).
    loss = p1 * jax.nn.softplus(-m1) + p2 * jax.nn.softplus(-m2)
    low = jnp.minimum(jnp.where(p1 > 0, m1, jnp.inf), jnp.where(p2 > 0, m2, jnp.inf))
    out = dict(first_full_accuracy=first, full_accuracy_from=since, final_loss=loss, final_min_margin=low,
               status=jnp.full(corr.shape, Status.OK, int_dtype()), first_bad_step=never)
    return {k: a.reshape(shape) for k, a in out.items()}


def two_particle_events(corr, p1, lr, steps: int, *, dtype=None) -> dict:
    """The events of `KERNEL_METRICS` for GD on [`two_particles`][] from W0 = 0, every run at once.

    The arguments broadcast against each other (any shapes). The margins stay finite for
    every step size (each step moves them by at most 2·lr), so `status` is always OK.
    """
    steps = v.check_count("steps", steps, 1)
    v.check_in_range("corr", corr, -1.0, 1.0)
    v.check_in_range("p1", p1, 0.0, 1.0)
    v.check_positive("lr", lr)
    dtype = default_dtype() if dtype is None else dtype
    corr, p1, lr = (jnp.asarray(a, dtype) for a in (corr, p1, lr))
    shape = jnp.broadcast_shapes(corr.shape, p1.shape, lr.shape)
    return _kernel(*(jnp.broadcast_to(a, shape) for a in (corr, p1, lr)), steps)


def two_particle_hitting_times(
    corr: Float[ArrayLike, "*B"],
    p1: Float[ArrayLike, "*B"],
    lr: Float[ArrayLike, "*B"],
    steps: int,
    *,
    dtype=None,
) -> Int[Array, "*B"]:
    """First GD step at which both tokens of [`two_particles`][] are predicted right.

    Runs the exact two-particle margin map from W0 = 0 (`theory.two_particles_step`):

        m1 ← m1 + 2 lr (p1 φ(m1) − corr p2 φ(m2)),  m2 ← m2 + 2 lr (p2 φ(m2) − corr p1 φ(m1))

    for all runs at once (the arguments broadcast). Accuracy follows `argmax` with ties to
    the first class, as [`accuracy`][]: token 1 counts as right at m1 = 0, token 2 does not
    at m2 = 0 (so corr = 1, where m2 = −m1 exactly, never hits).

    **Arguments:** `corr` (⟨e_1, e_2⟩ in [−1, 1]), `p1` (in [0, 1], p2 = 1 − p1), `lr`
    (> 0), any shapes; `steps` GD steps per run; `dtype` (float64 by default).

    **Returns:** ints of the broadcast shape: the first step k ≥ 0 with full accuracy (the
    convention of `particles.events`), −1 if none within `steps`.

    >>> two_particle_hitting_times([0.2, 0.95], 0.75, 1.0, 100).tolist()  # α > p2/p1: forgotten first
    [1, 52]
    """
    return two_particle_events(corr, p1, lr, steps, dtype=dtype)["first_full_accuracy"]


def paper_grid(num: int = 10) -> dict:
    """The axes of the paper's time-to-accuracy grid (paper-notes §4.3), float64 numpy.

    p1 = sigmoid(logspace(−0.5, 0.5, num)), corr = linspace(0.5, 1, num), lr = logspace(−1, 1, num).
    """
    num = v.check_count("num", num, 1)
    x = np.logspace(-0.5, 0.5, num)
    return dict(p1=1 / (1 + np.exp(-x)), corr=np.linspace(0.5, 1.0, num), lr=np.logspace(-1, 1, num))
