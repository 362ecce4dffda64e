"""The engine's small parts against independent computations: save schedules (exact arrays),
minibatch draws (statistics), the driver's chunks and refusals, descent on W with layer
norm and optax optimizers (numpy references), and a recompilation guard for every public
integrator and kernel.

Tolerances: exact where the computation is (schedules, refusals); 1e-12 where two float64
orderings of a few dozen steps of O(1) numbers are compared (round-off, a few ulps a step);
the statistical ones say their standard error (the 1/√B rate) beside them.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import particles as pt
from particles import _driver, _dynamics
from particles._schedule import Schedule

from .helpers import compilations, max_abs


def _problem(seed, N=4, M=3, d=3, W0=False):
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(N, d))
    U = rng.normal(size=(M, d))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    W = rng.normal(size=(d, d)) / np.sqrt(d) if W0 else None
    return pt.Problem.from_embeddings(E, U, rng.dirichlet(np.ones(N)), rng.integers(0, M, size=N), W0=W)


# ------------------------------------------------------------ save schedules
def _log_steps_by_hand(steps, num):
    """0, then the distinct roundings of steps^(k/(num−2)), k = 0..num−2 (log-spaced from 1 to
    steps), or every step when there are at most num of them; Python floats only."""
    if steps + 1 <= num:
        return list(range(steps + 1))
    grid = sorted({int(round(math.exp(math.log(steps) * k / (num - 2)))) for k in range(num - 1)})
    return [0] + grid


@pytest.mark.parametrize("steps,num,want", [
    (1000, 8, [0, 1, 3, 10, 32, 100, 316, 1000]),  # README: densely early, sparsely late
    (10, 4, [0, 1, 3, 10]),  # 10^(0, 1/2, 1) = 1, 3.16, 10
    (10, 10, [0, 1, 2, 3, 4, 6, 7, 10]),  # 11 steps > 10 kept: 10^(k/8) rounds 1,1,2,2,3,4,6,7,10
    (9, 10, list(range(10))),  # 10 steps, 10 kept: all of them
    (0, 2, [0]),
    (1, 2, [0, 1]),
])
def test_log_steps_are_exact_arrays(steps, num, want):
    got = pt.log_steps(steps, num)
    assert got.dtype == np.int64 and got.tolist() == want
    if steps >= 1:
        assert got[0] == 0 and got[-1] == steps and np.all(np.diff(got) > 0)


def test_log_steps_against_the_formula_on_a_grid():
    for steps in (1, 2, 3, 7, 50, 99, 100, 101, 1234, 10**6):
        for num in (3, 5, 50, 200):
            assert pt.log_steps(steps, num).tolist() == _log_steps_by_hand(steps, num), (steps, num)
            if steps >= num:  # step 1 is always saved once there are more steps than rows
                assert pt.log_steps(steps, num)[1] == 1


def test_log_steps_with_two_rows_ends_at_the_last_step():
    assert pt.log_steps(10, 2).tolist() == [0, 10]
    assert pt.log_steps(1, 2).tolist() == [0, 1]


def test_schedules_save_exactly_the_steps_asked():
    s = Schedule.of(12, 4)
    assert s.gaps.tolist() == [4, 4, 4] and s.uniform == 4 and s.steps.tolist() == [0, 4, 8, 12] and s.rows == 4
    s = Schedule.of(10, save_steps=np.array([0, 1, 3, 10]))
    assert s.gaps.tolist() == [1, 2, 7] and s.uniform is None and s.steps.tolist() == [0, 1, 3, 10]
    s = Schedule.of(6, save_steps=np.array([0, 2, 4, 6]))
    assert s.uniform == 2  # even explicit steps run as a fixed-length inner loop
    assert Schedule.of(0).rows == 1 and Schedule.of(0).steps.tolist() == [0]
    for bad in ([1, 10], [0, 5], [0, 5, 5, 10], [0, 7, 3, 10], [0.0, 10.0], [[0, 10]]):
        with pytest.raises(ValueError, match="save_steps"):
            Schedule.of(10, save_steps=np.array(bad))
    with pytest.raises(ValueError, match="save_every"):
        Schedule.of(10, 3)
    with pytest.raises(ValueError, match="num"):
        pt.log_steps(10, 1)
    # the runs save those rows, step by step identical to saving every step
    problem = _problem(0)
    every = pt.gd(problem, 1.5, 10)
    picked = pt.gd(problem, 1.5, 10, save_steps=np.array([0, 1, 3, 10]))
    assert np.asarray(picked.steps).tolist() == [0, 1, 3, 10]
    assert np.array_equal(np.asarray(picked.margins), np.asarray(every.margins)[[0, 1, 3, 10]])
    assert np.array_equal(np.asarray(picked.t), [0.0, 1.0, 3.0, 10.0])


# ------------------------------------------------------------ minibatches
def test_minibatch_weights_are_counts_of_draws_from_p():
    """B = 200,000 draws: each weight is a frequency, within 5 standard errors √(p(1−p)/B) of p
    (the 1/√B rate; 5σ fails with probability ~6e-7 per entry); p = 0 is never drawn."""
    p = jnp.array([0.5, 0.3, 0.15, 0.05, 0.0])
    B = 200_000
    w = np.asarray(_dynamics.minibatch_weights(jax.random.key(0), p, B))
    assert np.all(np.abs(w * B - np.round(w * B)) < 1e-6)  # multiples of 1/B
    assert abs(w.sum() - 1.0) < 1e-9 and w[-1] == 0.0
    se = np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / B)
    assert np.all(np.abs(w - np.asarray(p)) <= 5 * se + 1e-12), (w, se)
    # uniform draws would put 0.2 on every input: 40 standard errors away for the last two
    small = np.asarray(_dynamics.minibatch_weights(jax.random.key(1), p, 7))
    assert abs(small.sum() - 1.0) < 1e-12 and np.all(np.abs(small * 7 - np.round(small * 7)) < 1e-12) and small[-1] == 0


def test_sgd_step_is_gd_on_the_drawn_batch():
    """One SGD step = one GD step with the loss weighted by the batch's counts / B (numpy)."""
    problem = _problem(3, N=5)
    key = jax.random.key(11)
    traj = pt.sgd(problem, 0.8, 3, 6, key)
    S = np.asarray(problem.S0)
    G_E, G_U, Y = (np.asarray(a) for a in (problem.G_E, problem.G_U, problem.Y))
    for k in range(3):
        w = np.asarray(_dynamics.minibatch_weights(jax.random.fold_in(key, k), problem.p, 6))
        Z = np.exp(S - S.max(1, keepdims=True))
        S = S - 0.8 * G_E @ (w[:, None] * (Z / Z.sum(1, keepdims=True) - Y)) @ G_U
    assert max_abs(traj.final_scores, S) <= 1e-13  # round-off of three steps of O(1) numbers


# ------------------------------------------------------------ the driver
def test_chunks_and_the_interrupt_hook(monkeypatch):
    assert _driver.chunk_size(100, cut=False) == 100 and _driver.chunk_size(100, cut=True) == 2  # ceil(100/50)
    assert _driver.chunk_size(101, cut=True) == 3 and _driver.chunk_size(0, cut=True) == 1
    assert _driver.chunk_size(0, cut=False) == 1 and _driver.chunk_size(7, cut=True) == 1
    seen = []

    def advance(carry, chunk):
        return carry + chunk, chunk * 10

    carry, pieces = _driver.drive(advance, 0, [1, 2, 3, 4], sizes=[1, 1, 1, 1], done=1,
                                  on_chunk=lambda c, p, n: seen.append((c, list(p), n)))
    assert carry == 9 and pieces == [20, 30, 40]  # chunks[1:], from the carry given
    assert seen == [(2, [20], 2), (5, [20, 30], 3)]  # after each chunk but the last
    monkeypatch.setenv(_driver.STOP_AFTER, "2")
    calls = []
    with pytest.raises(KeyboardInterrupt):
        _driver.drive(lambda c, x: (calls.append(x) or c, x), 0, [1, 2, 3, 4], sizes=[1] * 4)
    assert calls == [1, 2]  # two chunks ran, the interrupt came before the third
    calls.clear()
    with pytest.raises(KeyboardInterrupt):  # counted from the first chunk this call runs
        _driver.drive(lambda c, x: (calls.append(x) or c, x), 0, [1, 2, 3, 4], sizes=[1] * 4, done=1)
    assert calls == [2, 3]
    monkeypatch.setenv(_driver.STOP_AFTER, "0")
    with pytest.raises(KeyboardInterrupt):
        _driver.drive(lambda c, x: (c, x), 0, [1], sizes=[1])


def test_resume_point_and_its_refusals():
    settings = dict(integrator="gd", lr=1.0)
    meta = dict(settings=dict(settings))
    assert _driver.resume_point(meta, settings, [0, 10, 20], [0, 10, 20, 30]) == 3
    assert _driver.resume_point(meta, settings, [0, 10, 20, 30], [0, 10, 20, 30]) == 4
    with pytest.raises(ValueError, match="no record of its settings"):
        _driver.resume_point({}, settings, [0], [0, 10])
    with pytest.raises(ValueError, match="lr=1.0, not 2.0"):
        _driver.resume_point(meta, dict(settings, lr=2.0), [0], [0, 10])
    with pytest.raises(ValueError, match="seed=None, not 3"):
        _driver.resume_point(meta, dict(settings, seed=3), [0], [0, 10])
    with pytest.raises(ValueError, match="not a prefix"):
        _driver.resume_point(meta, settings, [0, 10, 25], [0, 10, 20, 30])
    with pytest.raises(ValueError, match="not a prefix"):
        _driver.resume_point(meta, settings, [0, 10, 20, 30, 40], [0, 10, 20, 30])


def test_gd_resume_refusals():
    P = pt.two_particles(0.5, 0.75)
    bad = pt.Problem.from_grams(1e300 * np.eye(2), np.eye(2), [0.5, 0.5], [0, 1])
    failed = pt.gd(bad, 1e10, 4)
    assert not failed.ok
    with pytest.raises(ValueError, match="failed run"):
        pt.gd(bad, 1e10, 8, resume=failed)
    with pytest.raises(ValueError, match="not flow, not a batch"):
        pt.gd(P, 1.0, 8, resume=pt.gd(P, [1.0, 2.0], 4))
    with pytest.raises(ValueError, match="not flow, not a batch"):
        pt.gd(P, 1.0, 8, resume=pt.flow(P, 4.0, ts=np.array([0.0, 4.0])))
    with pytest.raises(ValueError, match="resume.final_scores"):
        pt.gd(pt.orthogonal(pt.zipf(3)), 1.0, 8, resume=pt.gd(pt.orthogonal(pt.zipf(3), M=4), 1.0, 4))
    with pytest.raises(ValueError, match="comes from a run with"):
        pt.sgd(P, 1.0, 8, 2, 0, resume=pt.gd(P, 1.0, 4))
    # a finished run resumed to more steps continues it exactly
    assert np.array_equal(np.asarray(pt.gd(P, 1.0, 8, resume=pt.gd(P, 1.0, 4)).margins),
                          np.asarray(pt.gd(P, 1.0, 8).margins))


def test_a_non_finite_state_is_found_at_its_exact_step():
    """Scores of size 1e300 · lr overflow on step 1: the state is bad from step 1 on, not before."""
    grams = 1e300 * np.eye(2)
    run = pt.gd(pt.Problem.from_grams(grams, np.eye(2), [0.5, 0.5], [0, 1]), 1e10, 6)
    assert int(run.first_bad_step) == 1 and int(run.status) == pt.Status.NON_FINITE
    assert np.all(np.isfinite(np.asarray(run.margins)[:1])) and not np.all(np.isfinite(np.asarray(run.margins)[1:]))
    fine = pt.gd(pt.two_particles(0.3, 0.6), 1.0, 6)
    assert int(fine.first_bad_step) == -1 and int(fine.status) == pt.Status.OK and fine.message == "ok"


# ------------------------------------------------------------ descent on W
def _np_softmax(S):
    Z = np.exp(S - S.max(-1, keepdims=True))
    return Z / Z.sum(-1, keepdims=True)


def _np_grad(problem, W, layer_norm=False):
    """∇_W of Σ_x p(x) CE(u_yᵀ n(W e_x)), n = identity or h/|h|, by the chain rule in numpy."""
    E, U, p, Y = (np.asarray(a, np.float64) for a in (problem.E, problem.U, problem.p, problem.Y))
    H = E @ W.T  # rows h_x = W e_x
    Hn = H / np.linalg.norm(H, axis=1, keepdims=True) if layer_norm else H
    G = (p[:, None] * (_np_softmax(Hn @ U.T) - Y)) @ U  # dL/dHn, rows
    if layer_norm:
        r = np.linalg.norm(H, axis=1, keepdims=True)
        G = (G - Hn * np.sum(G * Hn, axis=1, keepdims=True)) / r  # (I − n nᵀ)/|h| applied to the rows
    return G.T @ E  # Σ_x (dL/dh_x) e_xᵀ


def _np_scores(problem, W, layer_norm=False):
    E, U = np.asarray(problem.E), np.asarray(problem.U)
    H = E @ W.T
    return (H / np.linalg.norm(H, axis=1, keepdims=True) if layer_norm else H) @ U.T


def test_gd_weights_with_layer_norm_matches_numpy():
    problem = _problem(5, N=5, M=3, d=4, W0=True)
    W = np.asarray(problem.W0, np.float64)
    run = pt.gd_weights(problem, 0.7, 12, layer_norm=True, save_scores=True, save_weights=True)
    ref = [W]
    for _ in range(12):
        W = W - 0.7 * _np_grad(problem, W, layer_norm=True)
        ref.append(W)
    # round-off: two float64 orderings of 12 steps of O(1) numbers (a few ulps a step)
    assert max_abs(run.W, np.stack(ref)) <= 1e-12
    assert max_abs(run.scores, np.stack([_np_scores(problem, w, True) for w in ref])) <= 1e-12
    assert max_abs(run.final_scores, _np_scores(problem, ref[-1], True)) <= 1e-12
    # every score row has norm |U n| <= max|u_y| = 1: layer norm bounds the scores
    assert np.abs(np.asarray(run.scores)).max() <= 1 + 1e-12
    assert run.metadata["layer_norm"] is True and run.metadata["optimizer"] == "gd"
    # W0 explicitly: the same run
    again = pt.gd_weights(problem, 0.7, 12, layer_norm=True, W0=problem.W0)
    assert np.array_equal(np.asarray(again.margins), np.asarray(run.margins))
    with pytest.raises(ValueError, match="non-zero W0"):
        pt.gd_weights(problem, 0.7, 3, layer_norm=True, W0=np.zeros((4, 4)))


def _np_optimizer_run(problem, name, lr, steps):
    """W of plain GD, heavy ball (optax.sgd momentum 0.9: v ← g + 0.9 v, W ← W − lr v), sign
    descent (W ← W − lr sign g) and Adam (β = 0.9, 0.999, ε = 1e-8, bias-corrected), numpy."""
    d = np.asarray(problem.E).shape[1]
    W, v, m, s = np.zeros((d, d)), np.zeros((d, d)), np.zeros((d, d)), np.zeros((d, d))
    out = [W]
    for k in range(1, steps + 1):
        g = _np_grad(problem, W)
        if name == "gd":
            W = W - lr * g
        elif name == "momentum":
            v = g + 0.9 * v
            W = W - lr * v
        elif name == "sign":
            W = W - lr * np.sign(g)
        elif name == "adam":
            m = 0.9 * m + 0.1 * g
            s = 0.999 * s + 0.001 * g * g
            W = W - lr * (m / (1 - 0.9**k)) / (np.sqrt(s / (1 - 0.999**k)) + 1e-8)
        out.append(W)
    return np.stack(out)


@pytest.mark.parametrize("name", ["momentum", "sign", "adam"])
def test_named_optimizers_match_numpy(name):
    problem = _problem(6, N=4, M=3, d=3)
    run = pt.gd_weights(problem, 0.3, 10, optimizer=name, save_weights=True)
    # round-off of ten optimizer steps on O(1) numbers (Adam divides by √v + 1e-8: still O(1))
    assert max_abs(run.W, _np_optimizer_run(problem, name, 0.3, 10)) <= 1e-12
    assert run.metadata["optimizer"] == name


def test_a_callable_optimizer_is_used_and_named():
    import optax

    problem = _problem(7)

    def heavy(lr):
        return optax.sgd(lr, momentum=0.9)

    run = pt.gd_weights(problem, 0.3, 10, optimizer=heavy, save_weights=True)
    assert max_abs(run.W, _np_optimizer_run(problem, "momentum", 0.3, 10)) <= 1e-12
    assert run.metadata["optimizer"] == "heavy"
    plain = pt.gd_weights(problem, 0.3, 10, optimizer=lambda lr: optax.sgd(lr), save_weights=True)
    assert max_abs(plain.W, _np_optimizer_run(problem, "gd", 0.3, 10)) <= 1e-12
    assert plain.metadata["optimizer"] == "<lambda>"
    with pytest.raises(ValueError, match="optimizer"):
        pt.gd_weights(problem, 0.3, 10, optimizer=3)


def test_gd_weights_refusals_and_defaults():
    problem = _problem(8, W0=True)
    with pytest.raises(ValueError, match="W0"):
        pt.gd_weights(problem, 1.0, 3, W0=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="W0"):
        pt.gd_weights(problem, 1.0, 3, W0=np.full((3, 3), np.nan))
    grams = pt.Problem.from_embeddings(np.asarray(problem.E), np.asarray(problem.U), problem.p, problem.targets)
    scores = pt.gd(grams, 1.0, 3)
    # W0 defaults to problem.W0 (here: random), giving the score-space run from S0 = E W0ᵀ Uᵀ
    assert max_abs(pt.gd_weights(problem, 1.0, 3).margins, pt.gd(problem, 1.0, 3).margins) <= 1e-13
    assert max_abs(pt.gd_weights(grams, 1.0, 3).margins, scores.margins) <= 1e-13  # W0 = 0
    S0 = pt.Problem.from_grams(problem.G_E, problem.G_U, problem.p, problem.targets, S0=np.ones((4, 3)))
    with pytest.raises(ValueError, match="needs them"):
        pt.gd_weights(S0, 1.0, 3)
    import equinox as eqx

    moved = eqx.tree_at(lambda q: q.S0, grams, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="W0 is unknown"):
        pt.gd_weights(moved, 1.0, 3)


def test_weight_scores_and_loss_by_hand():
    problem = _problem(9, W0=True)
    W = np.asarray(problem.W0)
    S = np.asarray(pt.weight_scores(problem, jnp.asarray(W)))
    assert max_abs(S, _np_scores(problem, W)) <= 1e-15  # a 3-term dot product of O(1) numbers
    assert max_abs(pt.weight_scores(problem, jnp.asarray(W), layer_norm=True), _np_scores(problem, W, True)) <= 1e-15
    p, Y = np.asarray(problem.p), np.asarray(problem.Y)
    want = -np.sum(p * np.sum(Y * np.log(_np_softmax(S)), axis=1))
    assert abs(float(pt.weight_loss(jnp.asarray(W), problem)) - want) <= 1e-15 * 4


# ------------------------------------------------------------ no recompilation
def test_no_integrator_recompiles_for_new_values():
    """A second call with new values (rate, seed, tolerances, times) of the same shapes
    compiles nothing, for every public integrator and kernel. The guard can fail: the compile
    log records a new step count (a static shape), checked last."""
    P = pt.two_particles(0.5, 0.75)
    Q = pt.two_particles(0.3, 0.6)
    W = _problem(10)
    calls = [
        ("gd", lambda lr, k: pt.gd(P, lr, 20)),
        ("gd rates", lambda lr, k: pt.gd(P, [lr, 2 * lr], 20)),
        ("sgd", lambda lr, k: pt.sgd(P, lr, 20, 3, k)),
        ("gd_weights", lambda lr, k: pt.gd_weights(W, lr, 10)),
        ("gd_weights adam", lambda lr, k: pt.gd_weights(W, lr, 10, optimizer="adam")),
        ("gd_weights layer norm", lambda lr, k: pt.gd_weights(W, lr, 10, layer_norm=True, W0=np.eye(3))),
        ("flow", lambda lr, k: pt.flow(P, 10.0 * lr, ts=np.array([0.0, lr, 10.0 * lr]), rtol=1e-7 * lr)),
        ("hitting_time", lambda lr, k: pt.hitting_time(P, lr, 30)),
        ("hitting_time, other problem", lambda lr, k: pt.hitting_time(Q, lr, 30)),
        ("two_particle_hitting_times", lambda lr, k: pt.two_particle_hitting_times([0.5, 0.9], 0.75, lr, 30)),
    ]
    for name, call in calls:
        call(0.5, 1)  # compiles
        with compilations() as compiled:
            call(0.7, 2)
        assert compiled == [], f"{name} recompiled for a new value: {compiled}"
    with compilations() as compiled:
        pt.gd(P, 0.7, 21)
    assert compiled, "the compile log recorded nothing: the guard above would be vacuous"


# ------------------------------------------------------------ the dynamics' building blocks
def _np_gd(problem, lr, steps):
    G_E, G_U, p, Y = (np.asarray(a, np.float64) for a in (problem.G_E, problem.G_U, problem.p, problem.Y))
    S = np.asarray(problem.S0, np.float64)
    for _ in range(steps):
        S = S - lr * G_E @ (p[:, None] * (_np_softmax(S) - Y)) @ G_U
    return S


@pytest.mark.parametrize("make", [
    lambda: pt.random_sphere(0, 7, 5, 2),  # d = 2 ≪ N, M: both Grams applied through E and U
    lambda: pt.orthogonal(np.array([0.5, 0.3, 0.2]), M=4),  # identity Grams
    lambda: pt.Problem.from_embeddings(np.eye(3)[:, :2] + 0.5, np.eye(2), [0.5, 0.3, 0.2], [0, 1, 0]),  # E factored, U dense
    lambda: pt.Problem.from_embeddings(np.eye(2), np.eye(6)[:5, :2] + 0.1, [0.5, 0.5], [0, 4]),  # E dense, U factored
])
def test_every_gram_structure_is_the_numpy_step(make):
    problem = make()
    run = pt.gd(problem, 1.3, 15)
    assert max_abs(run.final_scores, _np_gd(problem, 1.3, 15)) <= 1e-13  # round-off, 15 steps of O(1) numbers
    S = jnp.asarray(np.random.default_rng(0).normal(size=(problem.N, problem.M)))
    R = np.asarray(_np_softmax(np.asarray(S)) - np.asarray(problem.Y))
    want = -np.asarray(problem.G_E) @ (np.asarray(problem.p)[:, None] * R) @ np.asarray(problem.G_U)
    assert max_abs(_dynamics.force(problem, S), want) <= 1e-14
    assert max_abs(_dynamics.flow_field(0.3, S, problem), want) <= 1e-14
    assert max_abs(_dynamics.log_time_field(0.3, S, problem), np.exp(0.3) * want) <= 1e-14
    w = jnp.asarray(np.linspace(0.1, 1.0, problem.N))
    want_w = -np.asarray(problem.G_E) @ (np.asarray(w)[:, None] * R) @ np.asarray(problem.G_U)
    assert max_abs(_dynamics.force(problem, S, w), want_w) <= 1e-14
    assert max_abs(_dynamics.gd_step(problem, S, 0.5, w), np.asarray(S) + 0.5 * want_w) <= 1e-14


def test_residuals_and_observables_at_the_edges():
    from particles import _observables as obs

    S = jnp.array([[2.0, -1.0, 0.5], [0.0, 30.0, -3.0]])
    targets = jnp.array([2, 1])
    onehot = np.eye(3)[[2, 1]]
    want = _np_softmax(np.asarray(S)) - onehot
    assert max_abs(_dynamics.target_residual(S, targets), want) <= 1e-15
    assert max_abs(_dynamics.residual(S, jnp.asarray(onehot)), want) <= 1e-15
    batch = jnp.stack([S, 2 * S, -S])  # the residual maps over leading axes
    want_b = np.stack([_np_softmax(np.asarray(x)) - onehot for x in batch])
    with jax.numpy_rank_promotion("allow"):  # (B, N, M) − (N, M): the documented broadcast
        assert max_abs(_dynamics.residual(batch, jnp.asarray(onehot)), want_b) <= 1e-15
    # a class with q(y|x) = 0 may have score −inf: no 0 · inf in the loss
    Sinf = jnp.array([[1.0, -jnp.inf, 0.0]])
    q = jnp.array([[0.5, 0.0, 0.5]])
    got = float(pt.loss(Sinf, jnp.ones(1), q))
    want_loss = -(0.5 * (1.0 - np.log(np.e + 1.0)) + 0.5 * (0.0 - np.log(np.e + 1.0)))
    assert abs(got - want_loss) <= 1e-15
    # M = 1: no competitor, margins +inf, loss 0, every input right
    one = jnp.zeros((3, 1))
    Y1, p = jnp.ones((3, 1)), jnp.array([0.2, 0.3, 0.5])
    assert np.asarray(pt.margins(one, Y1)).tolist() == [np.inf] * 3
    assert float(pt.loss(one, p, Y1)) == 0.0 and float(pt.accuracy(one, p, Y1)) == 1.0
    assert float(pt.zero_one(one, p, Y1)) == 0.0
    # batched scores: observables map over the leading axes
    B = jnp.stack([S, -S])
    Y = jnp.asarray(onehot)
    assert np.asarray(pt.margins(B, Y)).shape == (2, 2) and np.asarray(pt.loss(B, jnp.array([0.5, 0.5]), Y)).shape == (2,)
    assert max_abs(pt.margins(B, Y)[1], pt.margins(-S, Y)) == 0
    # the batched per-input losses against log-sum-exp in numpy, row by row (round-off: 1e-14)
    C = np.random.default_rng(2).normal(scale=5.0, size=(4, 2, 3))
    want_l = np.stack([np.log(np.exp(c).sum(1)) - c[[0, 1], [2, 1]] for c in C])
    assert max_abs(obs.losses(jnp.asarray(C), Y), want_l) <= 1e-14


def test_weight_decay_is_recorded_only_when_used():
    P = pt.two_particles(0.5, 0.75)
    for run in (lambda **k: pt.gd(P, 1.0, 3, **k), lambda **k: pt.sgd(P, 1.0, 3, 2, 0, **k)):
        plain, decayed = run(), run(weight_decay=0.125)
        assert "weight_decay" not in plain.metadata and plain.metadata["settings"]["weight_decay"] is None
        assert decayed.metadata["weight_decay"] == 0.125 and decayed.metadata["settings"]["weight_decay"] == 0.125


def test_public_integrators_and_sweeps_take_keyword_arguments():
    """Every argument has a name users may write; a keyword call equals the positional one."""
    P = pt.two_particles(0.5, 0.75)
    for integrate in (pt.gd, pt.gd_weights):
        a, b = integrate(problem=P, lr=1.0, steps=3), integrate(P, 1.0, 3)
        assert np.array_equal(np.asarray(a.margins), np.asarray(b.margins))
    a = pt.sgd(problem=P, lr=1.0, steps=3, batch_size=2, key=0)
    assert np.array_equal(np.asarray(a.margins), np.asarray(pt.sgd(P, 1.0, 3, 2, 0).margins))
    a = pt.sweep(problem="equicorrelated", axes={"lr": [1.0]}, steps=3)
    b = pt.sweep("equicorrelated", {"lr": [1.0]}, 3)
    assert a.outputs["final_loss"].tolist() == b.outputs["final_loss"].tolist()
    assert float(pt.theory.sharpness(problem=P, S=P.S0)) == float(pt.theory.sharpness(P, P.S0))


def test_a_resumed_run_has_no_bad_step():
    P = pt.two_particles(0.5, 0.75)
    resumed = pt.gd(P, 1.0, 10, resume=pt.gd(P, 1.0, 5))
    assert resumed.ok and int(resumed.first_bad_step) == -1 and resumed.status == pt.Status.OK


def test_gd_step_with_a_python_float_weight_decay_is_gd_on_w():
    """One step of W <- W - lr (grad L(W) + λ W), in numpy on W, against the score-space step
    with λ given as a Python float (the path that skips λ = 0)."""
    rng = np.random.default_rng(3)
    E, U = rng.normal(size=(3, 2)), rng.normal(size=(2, 2))
    p, t = np.array([0.5, 0.3, 0.2]), np.array([0, 1, 0])
    W = rng.normal(size=(2, 2))
    S = E @ W.T @ U.T
    Pm = np.exp(S - S.max(1, keepdims=True))
    Pm /= Pm.sum(1, keepdims=True)
    grad = U.T @ (Pm - np.eye(2)[t]).T @ np.diag(p) @ E  # dL/dW for S = E W^T U^T
    lr, lam = 0.7, 0.1
    W1 = W - lr * (grad + lam * W)
    problem = pt.Problem.from_embeddings(E, U, p, t)
    got = np.asarray(_dynamics.gd_step(problem, jnp.asarray(S), lr, weight_decay=lam))
    assert max_abs(got, E @ W1.T @ U.T) <= 1e-14  # a handful of O(1) products


def test_residual_with_soft_targets_is_softmax_minus_q():
    """Rows of q(y|x) as targets (not one-hot): the residual is softmax(S) − q everywhere,
    the target entry included, computed in numpy; ulps of O(1) numbers."""
    rng = np.random.default_rng(5)
    S = rng.normal(size=(4, 3))
    Q = rng.dirichlet(np.ones(3), size=4)
    P = np.exp(S - S.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    assert max_abs(np.asarray(_dynamics.residual(jnp.asarray(S), jnp.asarray(Q))), P - Q) <= 1e-15


def test_a_zero_weight_decay_as_an_array_is_no_decay():
    """λ = 0 is allowed however it is given (an array hyper-parameter is the jit-friendly form)."""
    P = _problem(2)
    plain = pt.gd(P, 0.5, 6)
    for lam in (jnp.asarray(0.0), np.float64(0.0), 0):
        run = pt.gd(P, 0.5, 6, weight_decay=lam)
        assert np.array_equal(np.asarray(run.margins), np.asarray(plain.margins))
    with pytest.raises(ValueError, match="weight_decay"):
        pt.gd(P, 0.5, 6, weight_decay=jnp.asarray(-1e-3))


def test_integrators_save_only_what_is_asked_by_default():
    """No scores, no weights and no progress bar unless asked (PARTICLES_QUIET unset)."""
    P = _problem(1)
    for run in (pt.gd(P, 0.5, 4), pt.sgd(P, 0.5, 4, 2, 0), pt.gd_weights(P, 0.5, 4)):
        assert run.scores is None
    assert pt.gd_weights(P, 0.5, 4).W is None


def test_no_progress_bar_by_default(capfd, monkeypatch):
    monkeypatch.delenv("PARTICLES_QUIET", raising=False)
    P = _problem(1)
    pt.gd(P, 0.5, 4), pt.sgd(P, 0.5, 4, 2, 0), pt.gd_weights(P, 0.5, 4)
    assert capfd.readouterr().err == ""
    pt.gd(P, 0.5, 4, progress=True)
    err = capfd.readouterr().err  # the bar itself: other lines on stderr (a compilation cache's) do not count
    assert "gd:" in err and "/4 [" in err and "step/s" in err


def test_a_batch_of_rates_refuses_each_single_run_option(tmp_path):
    P = _problem(1)
    for kw in (dict(checkpoint=str(tmp_path / "c.npz")), dict(progress=True), dict(resume=pt.gd(P, 0.5, 2))):
        with pytest.raises(ValueError, match="one learning rate"):
            pt.gd(P, jnp.asarray([0.5, 1.0]), 4, **kw)


def test_gd_on_w_needs_both_embeddings():
    import equinox as eqx

    P = _problem(1)
    for missing in ("E", "U"):
        half = eqx.tree_at(lambda q: getattr(q, missing), P, None, is_leaf=lambda x: x is None)
        with pytest.raises(ValueError, match="no embeddings"):
            pt.gd_weights(half, 0.5, 3)


def test_a_save_schedule_is_immutable():
    import dataclasses

    s = Schedule.of(10, 1, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.rows = 3


def test_correct_on_a_batch_of_score_matrices():
    """`correct` takes (..., N, M) scores: a batch of 3 against argmax in numpy (ties to the first)."""
    from particles import _observables as obs

    rng = np.random.default_rng(8)
    S = rng.integers(0, 3, size=(3, 4, 3)).astype(float)  # small integers: ties occur
    Y = np.eye(3)[[0, 2, 1, 0]]
    want = np.argmax(S, axis=-1) == np.array([0, 2, 1, 0])
    assert np.array_equal(np.asarray(obs.correct(jnp.asarray(S), jnp.asarray(Y))), want)


def test_sgd_takes_its_options_by_name():
    P = _problem(1)
    with pytest.raises(TypeError):
        pt.sgd(P, 0.5, 4, 2, 0, 1)  # save_every= by name only


def test_finite_weights_with_overflowing_scores_are_a_bad_step():
    """Descent on W at lr = 1e300 with embeddings 1e3 I: after one step W = −lr ∇L(W₀) is finite
    (entries ~ 2.5e305, in numpy) but the scores 1e6 W overflow; step 1 is the first bad step."""
    E = U = 1e3 * np.eye(2)
    P = pt.Problem.from_embeddings(E, U, np.array([0.5, 0.5]), np.array([0, 1]))
    grad = U.T @ (np.full((2, 2), 0.5) - np.eye(2)).T @ np.diag([0.5, 0.5]) @ E  # softmax(0) − Y
    W1 = -1e300 * grad
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.all(np.isfinite(W1)) and not np.all(np.isfinite(E @ W1.T @ U.T))
    run = pt.gd_weights(P, 1e300, 3)
    assert run.status == pt.Status.NON_FINITE and int(run.first_bad_step) == 1
