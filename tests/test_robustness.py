"""Property-based tests and extreme settings: the library never hands back a plausible wrong answer."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from hypothesis import HealthCheck, given, settings, strategies as st

import particles as pt

from .helpers import max_abs

PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw, max_size=8):
    N = draw(st.integers(1, max_size))
    M = draw(st.integers(1, max_size))
    d = draw(st.integers(1, max_size))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(N, d))
    U = rng.normal(size=(M, d))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    p = rng.dirichlet(np.full(N, draw(st.sampled_from([0.2, 1.0, 5.0]))))
    p /= p.sum()
    targets = rng.integers(0, M, size=N)
    return pt.Problem.from_embeddings(E, U, p, targets)


# Unit embeddings give lambda_max <= 1, so GD with lr < 2 is stable and rounding differences
# between the two computations cannot grow; above that, GD can be chaotic and the comparison
# of two float64 computations becomes meaningless after a few steps.
learning_rates = st.floats(1e-3, 1.9)


@PROPERTY
@given(problems(), learning_rates)
def test_properties_of_gd(problem, lr):
    traj = pt.gd(problem, lr, 30, save_scores=True)
    assert traj.ok
    loss = np.asarray(traj.loss)
    assert np.all(loss >= 0)
    # S0 = 0, one-hot targets: log M up to the rounding of a sum of N <= 8 terms (a few ulps of ~2)
    assert abs(loss[0] - np.log(problem.M)) <= 1e-14
    acc = np.asarray(traj.accuracy)
    # sums of at most 8 frequencies: each rounds by half an ulp of 1 (1.1e-16)
    assert np.all((acc >= 0) & (acc <= 1 + 1e-15))
    assert max_abs(acc + np.asarray(traj.zero_one), 1.0) <= 1e-14
    margins = np.asarray(traj.margins)
    if problem.M > 1:
        assert np.all(np.isfinite(margins))
    else:
        assert np.all(margins == np.inf) and np.all(loss == 0)  # no competitor: nothing to learn
    ref = pt.gd_weights(problem, lr, 30, save_scores=True)
    scale = 1.0 + float(np.abs(np.asarray(ref.scores)).max())
    # round-off relative to the scores' size: 30 stable steps, a few ulps each (see above)
    assert max_abs(traj.scores, ref.scores) <= 1e-12 * scale


@PROPERTY
@given(st.integers(1, 8), st.integers(2, 8), st.integers(0, 2**31 - 1), st.floats(1e-3, 1e3))
def test_orthogonal_gd_never_raises_the_loss(N, M, seed, lr):
    p = np.random.default_rng(seed).dirichlet(np.ones(N))
    loss = np.asarray(pt.gd(pt.orthogonal(p / p.sum(), M=M), lr, 50).loss)
    # Orthogonal GD is monotone for every lr (paper-notes 3.1); allow the rounding of one loss
    # evaluation, a few ulps (1e-15 relative ~ 4.5 ulps), plus the smallest normal-ish floor.
    assert np.all(np.diff(loss) <= 1e-15 * loss[:-1] + 1e-300)


# ------------------------------------------------------------------ extremes
def test_tiny_frequency_matches_recursion():
    p = np.array([1 - 1e-12, 1e-12])
    traj = pt.gd(pt.orthogonal(p), 1.0, 1000, save_every=100)
    m = np.zeros(2)
    for _ in range(1000):
        m = m + 2 * p / (np.exp(m) + 1)
    assert max_abs(traj.margins[-1], m) <= 1e-12  # round-off of 1000 steps, margins ~7 (~1e-14)
    assert 0 < float(traj.margins[-1, 1]) < 1e-8


def test_single_input_and_single_output():
    one_in = pt.gd(pt.orthogonal(np.ones(1), M=3), 1.0, 20)
    assert one_in.ok and float(one_in.margins[-1, 0]) > 0
    one_out = pt.gd(pt.orthogonal(np.array([0.3, 0.7]), M=1), 5.0, 20, save_scores=True)
    assert np.all(np.asarray(one_out.loss) == 0) and np.all(np.asarray(one_out.scores) == 0)
    assert np.all(np.asarray(one_out.accuracy) == 1)


def test_one_dimensional_embeddings():
    problem = pt.random_sphere(jax.random.key(0), 4, 3, 1)
    traj = pt.gd(problem, 1.0, 50, save_scores=True)
    ref = pt.gd_weights(problem, 1.0, 50, save_scores=True)
    assert traj.ok and max_abs(traj.scores, ref.scores) <= 1e-12  # round-off of two orderings, 50 steps


def test_fully_correlated_inputs_with_different_targets():
    """corr = 1: e_1 = e_2, so m1 + m2 stays 0 and GD converges to m1 = log(p1/p2) (the CE minimum)."""
    p1 = 0.7
    traj = pt.gd(pt.two_particles(1.0, p1), 0.5, 4000, save_every=4000)
    m1, m2 = np.asarray(traj.margins[-1])
    assert abs(m1 + m2) <= 1e-13  # exact symmetry; round-off of margins ~1 over 4000 steps
    # Near m* the map m <- m + 2η(φ(m) - p2) contracts by 1 - 2η p1 p2 = 0.79 per step, so after
    # 4000 steps only round-off is left (~1e-15); 1e-9 is a loose bound on it.
    assert abs(m1 - np.log(p1 / (1 - p1))) <= 1e-9


def test_anti_correlated_inputs_cooperate():
    """corr = -1: e_2 = -e_1, and with different targets both margins are the same number."""
    traj = pt.gd(pt.two_particles(-1.0, 0.8), 1.0, 200)
    m = np.asarray(traj.margins)
    assert max_abs(m[:, 0], m[:, 1]) <= 1e-12 and m[-1, 0] > 0  # equal up to round-off (200 steps)


def test_huge_learning_rate_and_margins_beyond_700():
    traj = pt.gd(pt.orthogonal(np.array([0.5, 0.5])), 1e4, 10)
    assert traj.ok
    # m_1 = lr * p exactly (one step from 0; exp(5000) would overflow): a few ulps of 5000
    assert float(traj.margins[1, 0]) == pytest.approx(1e4 * 0.5, rel=1e-15)
    assert np.all(np.asarray(traj.loss[1:]) == 0.0)
    two = pt.gd(pt.two_particles(0.95, 0.75), 1e4, 50)
    assert two.ok and np.all(np.isfinite(np.asarray(two.loss)))


def test_flow_to_1e12():
    p = np.array([0.6, 0.4])
    traj = pt.flow(pt.orthogonal(p), 1e12, ts=np.array([0.0, 1e3, 1e12]))
    assert traj.ok, traj.message
    for x in range(2):
        c = 2 * p[x] * 1e12 + 1
        exact = scipy.optimize.brentq(lambda m: np.exp(m) + m - c, 0, np.log(c) + 1, xtol=1e-14)
        # truncation of the log-time solve at rtol = atol = 1e-8 (margins ~28)
        assert abs(float(traj.margins[-1, x]) - exact) <= 1e-6
    assert traj.metadata["num_steps"] < 100  # log-time and a cancellation-free residual


def test_ten_million_steps_in_flat_memory():
    """1e7 GD steps saving every 1e5: 101 rows, against the scalar recursion of paper-notes 3.1
    (one token against M - 1 = 4 others, p = 0.3, lr = 1) iterated here in plain Python floats."""
    p = np.array([0.3, 0.7])
    problem = pt.orthogonal(p, M=5, targets=np.array([0, 1]))
    traj = pt.gd(problem, 1.0, 10_000_000, save_every=100_000)
    assert traj.margins.shape == (101, 2) and traj.ok
    m, c, exp = 0.0, 1.0 * 5 * 0.3, math.exp
    for _ in range(10_000_000):
        m += c / (exp(m) + 4.0)
    # Two float64 computations of the same 1e7 additions: each step rounds the scores
    # (|S| <= 17, half an ulp = 1.8e-15) in a different order; even if every rounding went the
    # same way the margins would differ by 2 x 1e7 x 1.8e-15 = 3.6e-8 at most.
    assert abs(float(traj.margins[-1, 0]) - m) <= 1e-7
    # The theory's lower bound e^m + (M-1) m >= 1 + lr M p t (GD dominates the flow).
    got = float(traj.margins[-1, 0])
    assert np.exp(got) + 4 * got >= 1 + 5 * 0.3 * 1e7


def test_traced_inputs_are_not_checked_but_run():
    """Under vmap the corr values are tracers: constructors build without range checks."""
    out = jax.vmap(lambda c: pt.gd(pt.two_particles(c, 0.6), 1.0, 3).loss[-1])(jnp.array([0.0, 0.5]))
    assert out.shape == (2,) and np.all(np.isfinite(np.asarray(out)))
