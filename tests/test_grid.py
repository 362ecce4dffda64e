"""Lean hitting-time kernels against GD trajectories, a W-space numpy loop and closed forms."""

import jax
import numpy as np
import pytest

import particles
from particles._grid import hitting_time, paper_grid, two_particle_hitting_times
from benchmarks._grid_baselines import numpy_hitting_times


def _first_full(traj):
    # Independent of the kernels: from the saved margins (ties -> index 0, as argmax).
    m = np.asarray(traj.margins)
    full = (m[:, 0] >= 0) & (m[:, 1] > 0)
    full[0] = False
    hits = np.flatnonzero(full)
    return int(hits[0]) if hits.size else -1


def test_against_w_space_numpy_on_a_coarse_grid():
    g = paper_grid(4)
    P1, C, L = np.meshgrid(g["p1"], g["corr"], g["lr"], indexing="ij")
    got = np.asarray(two_particle_hitting_times(C, P1, L, 300))
    want = numpy_hitting_times(C, P1, L, 300).reshape(C.shape)
    np.testing.assert_array_equal(got, want)
    assert np.all(got[:, -1] == -1)  # corr = 1: m2 = -m1 exactly, never both right


@pytest.mark.parametrize("corr, p1, lr", [(0.5, 0.7, 0.3), (0.9, 0.6, 3.0), (0.2, 0.8, 1.0), (0.95, 0.75, 10.0)])
def test_against_gd(corr, p1, lr):
    prob = particles.two_particles(corr, p1)
    want = _first_full(particles.gd(prob, lr, 200))
    assert int(two_particle_hitting_times(corr, p1, lr, 200)) == want
    assert int(hitting_time(prob, lr, 200)) == want


def test_first_step_rule():
    # One step gives m = lr (p1 - corr p2, p2 - corr p1): full accuracy at step 1 iff corr < p2/p1.
    p1 = 0.7
    corr = np.array([0.1, 0.3, 0.42, 0.43, 0.6])
    got = np.asarray(two_particle_hitting_times(corr, p1, 0.5, 50))
    assert np.all((got == 1) == (corr < (1 - p1) / p1))


def test_vmapped_generic_kernel():
    c = np.array([0.5, 0.8, 1.0])
    q = np.array([0.6, 0.7, 0.75])
    l = np.array([1.0, 0.5, 2.0])
    f = jax.vmap(lambda c, q, l: hitting_time(particles.two_particles(c, q), l, 100))
    np.testing.assert_array_equal(f(c, q, l), two_particle_hitting_times(c, q, l, 100))


@pytest.mark.parametrize(
    "args, match",
    [((0.5, 0.7, 0.0, 10), "lr"), ((1.5, 0.7, 1.0, 10), "corr"), ((0.5, 1.2, 1.0, 10), "p1"), ((0.5, 0.7, 1.0, 0), "steps")],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        two_particle_hitting_times(*args)
