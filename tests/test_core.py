"""The particle reduction and its integrators against independent computations (float64).

Tolerances: 1e-11 .. 1e-16 are float64 round-off (a few ulps of the numbers compared, or a
short computation repeated a few hundred times); the others say why beside them.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.optimize

import particles as pt

from .helpers import compilations, max_abs


def _random_problem(seed, N, M, d, *, W0=False, soft=False):
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(N, d))
    U = rng.normal(size=(M, d))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    p = rng.dirichlet(np.ones(N))
    if soft:
        targets = rng.dirichlet(np.ones(M), size=N)
    else:
        targets = rng.integers(0, M, size=N)
    W = rng.normal(size=(d, d)) / np.sqrt(d) if W0 else None
    return pt.Problem.from_embeddings(E, U, p, targets, W0=W)


def _np_gd(G_E, G_U, p, Y, S, lr, steps):
    """GD in score space written directly in numpy (no JAX): the miscompilation guard."""
    out = [S.copy()]
    for _ in range(steps):
        Z = np.exp(S - S.max(1, keepdims=True))
        P = Z / Z.sum(1, keepdims=True)
        S = S - lr * G_E @ (p[:, None] * (P - Y)) @ G_U
        out.append(S.copy())
    return np.stack(out)


# ----------------------------------------------------------------- reduction
@pytest.mark.parametrize("N,M,d", [(7, 4, 3), (5, 5, 10)])
@pytest.mark.parametrize("W0", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_score_gd_equals_weight_gd(N, M, d, W0, soft):
    """The reduction is exact: score-space GD = jax.grad GD on W, to 1e-12 after 60 steps."""
    problem = _random_problem(N * 100 + d + 7 * W0 + 3 * soft, N, M, d, W0=W0, soft=soft)
    scores = pt.gd(problem, 0.7, 60, save_scores=True)
    weights = pt.gd_weights(problem, 0.7, 60, save_scores=True)
    # Round-off only: two float64 orderings of the same 60 steps (scores O(1..10), eps 2.2e-16,
    # a few ulps per step) stay near 1e-14; 1e-12 leaves room, an error in the map would not fit.
    assert max_abs(scores.scores, weights.scores) <= 1e-12
    assert max_abs(scores.loss, weights.loss) <= 1e-12
    assert max_abs(scores.final_scores, weights.final_scores) <= 1e-12


def test_jit_matches_numpy():
    """A cheap guard against a CPU miscompilation of the jitted loop."""
    problem = _random_problem(3, 9, 6, 4)
    traj = pt.gd(problem, 1.3, 40, save_scores=True)
    ref = _np_gd(np.asarray(problem.G_E), np.asarray(problem.G_U), np.asarray(problem.p),
                 np.asarray(problem.Y), np.asarray(problem.S0), 1.3, 40)
    assert max_abs(traj.scores, ref) <= 1e-12  # round-off of two float64 orderings over 40 steps


@pytest.mark.parametrize("structure", ["factored", "identity"])
def test_structured_paths_equal_dense(structure):
    """Identity and factored Gram application give the dense result (to rounding)."""
    if structure == "factored":
        problem = pt.random_sphere(jax.random.key(0), 40, 30, 5)
        assert problem.structure_E == "factored" and problem.structure_U == "factored"
    else:
        problem = pt.orthogonal(pt.zipf(12, 1.0), M=5)
    dense = pt.Problem.from_grams(problem.G_E, problem.G_U, problem.p, problem.Y)
    assert dense.structure_E == "dense"
    a = pt.gd(problem, 2.0, 50, save_every=10, save_scores=True)
    b = pt.gd(dense, 2.0, 50, save_every=10, save_scores=True)
    assert a.metadata["structure"] != b.metadata["structure"]
    # Round-off: E (Eᵀ X) and (E Eᵀ) X sum 40 products in other orders, 50 steps, scores ~10.
    assert max_abs(a.scores, b.scores) <= 1e-11


# ------------------------------------------------------------- orthogonal case
def _orthogonal_flow_margin_brentq(t, p, M):
    """Root of e^m + (M-1) m = M p t + 1 (paper-notes 3.1), found with scipy's brentq."""
    c = M * p * t + 1.0
    return scipy.optimize.brentq(lambda m: np.exp(m) + (M - 1) * m - c, 0.0, np.log(c) + 1.0, xtol=1e-14, rtol=1e-15)


@pytest.mark.parametrize("M", [2, 10])
def test_orthogonal_flow_matches_closed_form(M):
    p = np.array([0.5, 0.3, 0.2])
    problem = pt.orthogonal(p, M=M)
    ts = np.concatenate([[0.0], np.geomspace(1e-2, 1e6, 40)])
    traj = pt.flow(problem, 1e6, ts=ts)
    assert traj.ok, traj.message
    expected = np.array([[_orthogonal_flow_margin_brentq(t, px, M) for px in p] for t in ts])
    err = max_abs(traj.margins, expected)
    # Truncation of the solve at rtol = atol = 1e-8, accumulated over ~50 log-time steps
    # (brentq's own error is 1e-14).
    assert err <= 1e-6, f"max |flow - closed form| = {err:.2e} (tolerance 1e-6)"


@pytest.mark.parametrize("M", [2, 10])
def test_orthogonal_gd_matches_scalar_recursion(M):
    p = np.array([0.6, 0.25, 0.15])
    lr, steps = 3.0, 500
    traj = pt.gd(pt.orthogonal(p, M=M), lr, steps)
    m = np.zeros_like(p)
    ref = [m]
    for _ in range(steps):
        m = m + lr * M * p / (np.exp(m) + M - 1)
        ref.append(m)
    assert max_abs(traj.margins, np.stack(ref)) <= 1e-12  # round-off: 500 steps of margins ~6, ~1e-14


# ---------------------------------------------------------------- two particles
def test_two_particles_gd_equals_2d_map():
    corr, p1, lr = 0.6, 0.75, 2.5
    p2 = 1 - p1
    traj = pt.gd(pt.two_particles(corr, p1), lr, 200)
    phi = lambda m: 1.0 / (1.0 + np.exp(m))
    m1 = m2 = 0.0
    ref = [(m1, m2)]
    for _ in range(200):
        m1, m2 = (m1 + 2 * lr * (p1 * phi(m1) - corr * p2 * phi(m2)),
                  m2 + 2 * lr * (p2 * phi(m2) - corr * p1 * phi(m1)))
        ref.append((m1, m2))
    assert max_abs(traj.margins, np.array(ref)) <= 1e-12  # round-off over 200 steps (margins ~5)


def test_two_particles_first_step():
    corr, p1, lr = 0.5, 0.8, 1.7
    traj = pt.gd(pt.two_particles(corr, p1), lr, 1)
    p2 = 1 - p1
    # one step from S = 0: a handful of roundings of numbers ~1 (eps = 2.2e-16)
    assert max_abs(traj.margins[1], [lr * (p1 - corr * p2), lr * (p2 - corr * p1)]) <= 1e-15


def test_two_particles_geometry():
    problem = pt.two_particles(0.3, 0.7)
    # the geometry is built from a few float operations on numbers <= 1: a few ulps (<= 1e-15)
    assert max_abs(problem.G_E, [[1.0, 0.3], [0.3, 1.0]]) <= 1e-15
    assert max_abs(problem.E, [[1.0, 0.0], [0.3, np.sqrt(1 - 0.09)]]) <= 1e-15
    assert max_abs(problem.p, [0.7, 0.3]) <= 1e-15


def test_equicorrelated_geometry():
    problem = pt.equicorrelated(5, -0.2, m=3)
    # round-off of a 5-term dot product of entries <= 1 (<= 1e-14); single values to a few ulps
    assert max_abs(problem.E @ problem.E.T, problem.G_E) <= 1e-14
    assert max_abs(jnp.diag(problem.G_E), np.ones(5)) <= 1e-15
    assert max_abs(problem.G_E[0, 1:], -0.2 * np.ones(4)) <= 1e-15
    assert max_abs(problem.U @ problem.U.T, np.eye(3)) == 0
    assert list(np.asarray(problem.targets)) == [0, 1, 2, 0, 1]
    assert max_abs(problem.p, pt.zipf(5, 1.0)) == 0
    padded = pt.equicorrelated(3, 0.4, d=6, targets=np.array([1, 1, 0]))
    assert padded.E.shape == (3, 6) and max_abs(padded.E @ padded.E.T, padded.G_E) <= 1e-14
    assert list(np.asarray(padded.targets)) == [1, 1, 0]


def test_zipf():
    p = pt.zipf(4, 2.0)
    w = 1.0 / np.arange(1, 5) ** 2
    assert max_abs(p, w / w.sum()) <= 1e-16  # one rounding of numbers < 1: half an ulp of 0.7 is 5.6e-17


# ------------------------------------------------------------------- the flow
def test_small_lr_gd_tracks_flow():
    """GD with step eta at step k approximates the flow at t = eta k, with O(eta) error."""
    problem = _random_problem(11, 6, 4, 3)
    errs = []
    for lr in (0.02, 0.01):
        steps = int(round(4.0 / lr))
        gd = pt.gd(problem, lr, steps, save_every=steps // 4)
        fl = pt.flow(problem, 4.0, ts=np.asarray(gd.t) * lr)
        errs.append(max_abs(gd.margins, fl.margins))
    # Truncation: Euler's global error is first order, C·η with C ~ 1 here (the flow at
    # rtol 1e-8 adds ~1e-7). Halving η halves it: ratio 2 up to the O(η²) term (±15%).
    assert errs[0] < 2e-2
    assert 1.7 < errs[0] / errs[1] < 2.3, f"errors {errs} do not halve with eta (first order)"


def test_flow_matches_solve_ivp():
    problem = _random_problem(5, 6, 5, 4, W0=True)
    G_E, G_U, p, Y = (np.asarray(a) for a in (problem.G_E, problem.G_U, problem.p, problem.Y))

    def rhs(t, s):
        S = s.reshape(Y.shape)
        Z = np.exp(S - S.max(1, keepdims=True))
        return (-G_E @ (p[:, None] * (Z / Z.sum(1, keepdims=True) - Y)) @ G_U).ravel()

    ts = np.array([0.0, 0.5, 3.0, 20.0, 100.0])
    ref = scipy.integrate.solve_ivp(rhs, (0, 100.0), np.asarray(problem.S0).ravel(), method="DOP853",
                                    t_eval=ts, rtol=1e-12, atol=1e-12)
    traj = pt.flow(problem, 100.0, ts=ts, rtol=1e-10, atol=1e-10, save_scores=True)
    assert traj.ok
    err = max_abs(traj.scores, ref.y.T.reshape(-1, *Y.shape))
    # Truncation: diffrax at rtol = atol = 1e-10 (the reference at 1e-12), global error up to
    # ~1000 times the local tolerance over the solve (particles.events.FLOW_TOLERANCE_FACTOR).
    assert err <= 1e-7, f"|diffrax - solve_ivp| = {err:.2e}"


def test_flow_failure_is_reported_not_raised():
    traj = pt.flow(pt.two_particles(0.3, 0.6), 1e6, max_steps=3)
    assert int(traj.status) == pt.Status.MAX_STEPS == 2 and not traj.ok
    assert "max_steps" in traj.message


# ------------------------------------------------------------------------ SGD
def test_sgd_step_is_unbiased():
    """The mean of one SGD step over many keys is the GD step (within 5 standard errors)."""
    problem = _random_problem(2, 5, 3, 4)
    keys = jax.random.split(jax.random.key(0), 20000)
    one = jax.vmap(lambda k: pt.sgd(problem, 1.0, 1, 2, k).final_scores)(keys)
    gd = pt.gd(problem, 1.0, 1).final_scores
    mean = one.mean(0)
    se = one.std(0) / np.sqrt(len(keys))
    z = np.abs(np.asarray(mean - gd)) / np.maximum(np.asarray(se), 1e-300)
    # Statistical: the mean of 20000 steps has standard error std/√20000 (the 1/√B rate);
    # 5 standard errors is exceeded with probability ~6e-7 per entry if the step is unbiased.
    assert np.all(z < 5), f"largest z-score {z.max():.2f}"


def test_sgd_large_batch_recovers_gd():
    problem = _random_problem(8, 5, 3, 4)
    gd = pt.gd(problem, 0.5, 20).margins
    errs = [max_abs(pt.sgd(problem, 0.5, 20, B, jax.random.key(1)).margins, gd) for B in (100, 100_00, 1_000_000)]
    # Statistical: the minibatch gradient's noise falls like 1/√B, so each 100x batch divides the
    # error by ~10 (measured 6..16 over seeds: a max over 20 rows of a random walk); at B = 1e6
    # the error is ~1.3e-3, below 5e-3.
    assert errs[-1] < 5e-3, errs
    assert 3 < errs[0] / errs[1] < 35 and 3 < errs[1] / errs[2] < 35, errs


def test_sgd_takes_an_integer_seed():
    problem = _random_problem(8, 5, 3, 4)
    a = pt.sgd(problem, 0.5, 20, 3, 7)
    b = pt.sgd(problem, 0.5, 20, 3, jax.random.key(7))
    assert np.array_equal(np.asarray(a.final_scores), np.asarray(b.final_scores))
    assert a.metadata["seed"] == 7
    c = pt.sgd(problem, 0.5, 20, 3, 8)
    assert not np.array_equal(np.asarray(a.final_scores), np.asarray(c.final_scores))
    with pytest.raises(ValueError, match="key=-1"):
        pt.sgd(problem, 0.5, 20, 3, -1)


def test_sgd_never_draws_zero_frequency_inputs():
    problem = pt.orthogonal(np.array([0.5, 0.5, 0.0]))
    traj = pt.sgd(problem, 1.0, 50, 8, jax.random.key(3), save_scores=True)
    assert max_abs(traj.scores[:, 2], 0.0) == 0  # token 2 never drawn, orthogonal: never moves


# ------------------------------------------------------------------------ vmap
def test_vmap_over_learning_rates_and_problems():
    problem = _random_problem(4, 6, 3, 4)
    lrs = jnp.array([0.1, 1.0, 10.0])
    batched = pt.gd(problem, lrs, 30, save_every=5)
    assert batched.batch_shape == (3,)
    for k, lr in enumerate(lrs):
        # round-off: vmapped and single-rate code may fuse the same operations differently
        assert max_abs(batched[k].margins, pt.gd(problem, float(lr), 30, save_every=5).margins) <= 1e-13
    via_vmap = jax.vmap(lambda lr: pt.gd(problem, lr, 30, save_every=5))(lrs)
    assert max_abs(via_vmap.loss, batched.loss) == 0

    corr = jnp.linspace(0.0, 0.9, 4)
    p1 = jnp.linspace(0.55, 0.9, 4)
    grid = jax.vmap(lambda c, q: pt.gd(pt.two_particles(c, q), 1.0, 10))(corr, p1)
    for k in range(4):
        single = pt.gd(pt.two_particles(float(corr[k]), float(p1[k])), 1.0, 10)
        assert max_abs(grid.margins[k], single.margins) <= 1e-14  # round-off, 10 steps of margins ~1


def test_new_learning_rate_does_not_recompile():
    problem = _random_problem(6, 4, 3, 2)
    pt.gd(problem, 0.5, 20)
    pt.gd(problem, jnp.asarray(0.6), 20)  # a rate given as an array: its conversion compiles once
    with compilations() as names:
        pt.gd(problem, 0.7, 20)
        pt.gd(problem, jnp.asarray(0.9), 20)
    assert names == [], names
    # The guard can fail: a new number of steps (a static shape) does compile the run.
    with compilations() as names:
        pt.gd(problem, 0.7, 21)
    assert names, "the compile log recorded nothing: the guard above would be vacuous"


# ------------------------------------------------------------- saving, resume
def test_save_every_and_log_steps():
    problem = _random_problem(1, 4, 3, 3)
    full = pt.gd(problem, 1.0, 100)
    every = pt.gd(problem, 1.0, 100, save_every=20)
    assert list(np.asarray(every.steps)) == [0, 20, 40, 60, 80, 100]
    assert max_abs(every.margins, full.margins[::20]) == 0
    steps = pt.log_steps(100, 12)
    logged = pt.gd(problem, 1.0, 100, save_steps=steps)
    assert list(np.asarray(logged.steps)) == list(steps) and steps[0] == 0 and steps[-1] == 100
    assert max_abs(logged.margins, full.margins[steps]) == 0
    with pytest.raises(ValueError, match="save_every"):
        pt.gd(problem, 1.0, 100, save_every=30)


def test_progress_chunks_equal_one_call():
    problem = _random_problem(1, 4, 3, 3)
    a = pt.gd(problem, 1.0, 300, save_every=3)
    b = pt.gd(problem, 1.0, 300, save_every=3, progress=True)
    assert np.array_equal(np.asarray(a.margins), np.asarray(b.margins))


def test_resume_is_bit_for_bit(tmp_path):
    problem = _random_problem(9, 5, 4, 3)
    whole = pt.gd(problem, 2.0, 100, save_every=10)
    first = pt.gd(problem, 2.0, 50, save_every=10)
    resumed = pt.gd(problem, 2.0, 100, save_every=10, resume=first)
    assert np.array_equal(np.asarray(resumed.steps), np.arange(0, 101, 10))
    for name in ("margins", "loss", "final_scores"):
        assert np.array_equal(np.asarray(getattr(resumed, name)), np.asarray(getattr(whole, name))), name
    with pytest.raises(ValueError, match="lr=2.0"):
        pt.gd(problem, 3.0, 100, save_every=10, resume=first)
    with pytest.raises(ValueError, match="prefix"):
        pt.gd(problem, 2.0, 100, save_every=20, resume=first)

    key = jax.random.key(4)
    whole = pt.sgd(problem, 2.0, 60, 3, key, save_every=20)
    part = pt.sgd(problem, 2.0, 40, 3, key, save_every=20)
    assert np.array_equal(np.asarray(pt.sgd(problem, 2.0, 60, 3, key, save_every=20, resume=part).final_scores),
                          np.asarray(whole.final_scores))
    with pytest.raises(ValueError, match="seed"):
        pt.sgd(problem, 2.0, 60, 3, jax.random.key(5), save_every=20, resume=part)


def test_checkpoint_file_resumes_an_interrupted_run(tmp_path, monkeypatch):
    problem = _random_problem(10, 5, 4, 3)
    path = tmp_path / "ck.npz"
    whole = pt.gd(problem, 1.5, 1000, save_every=10, checkpoint=path)
    assert np.array_equal(np.asarray(pt.Trajectory.load(path).margins), np.asarray(whole.margins))
    # A real interrupt (the driver's test hook raises KeyboardInterrupt, as Ctrl-C would,
    # after 4 chunks) leaves the last finished chunk on disk.
    path.unlink()
    monkeypatch.setenv("PARTICLES_STOP_AFTER_CHUNKS", "4")
    with pytest.raises(KeyboardInterrupt):
        pt.gd(problem, 1.5, 1000, save_every=10, checkpoint=path)
    monkeypatch.delenv("PARTICLES_STOP_AFTER_CHUNKS")
    partial = pt.Trajectory.load(path)
    n = len(np.asarray(partial.steps))
    assert 1 < n < len(np.asarray(whole.steps))  # some rows, not all
    assert np.array_equal(np.asarray(partial.steps), np.asarray(whole.steps)[:n])
    assert np.array_equal(np.asarray(partial.margins), np.asarray(whole.margins)[:n])
    assert not list(tmp_path.glob(".tmp-*"))  # the atomic write left no temporary file
    back = pt.gd(problem, 1.5, 1000, save_every=10, resume=partial, checkpoint=path)
    assert np.array_equal(np.asarray(back.margins), np.asarray(whole.margins))
    assert np.array_equal(np.asarray(back.final_scores), np.asarray(whole.final_scores))


def test_save_load_roundtrip(tmp_path):
    traj = pt.gd(pt.two_particles(0.3, 0.7), 1.0, 20, save_scores=True)
    path = tmp_path / "run.npz"
    problem = pt.two_particles(0.3, 0.7)
    traj.save(path, problem=problem, extra={"seed": 7})
    back = pt.Trajectory.load(path)
    stored = pt.Trajectory.load_problem(path)
    for name in ("p", "Y", "G_E", "G_U", "S0", "E", "U", "W0"):
        assert np.array_equal(np.asarray(getattr(stored, name)), np.asarray(getattr(problem, name))), name
    assert (stored.structure_E, stored.structure_U) == (problem.structure_E, problem.structure_U)
    assert np.array_equal(np.asarray(back.scores), np.asarray(traj.scores))
    assert back.metadata["lr"] == 1.0 and back.integrator == "gd"
    assert back.metadata["extra"] == {"seed": 7} and "jax" in back.metadata["versions"]
    assert not list(tmp_path.glob(".tmp-*"))
    # The package-level reader returns the right type, with the same rows.
    generic = pt.load(path)
    assert isinstance(generic, pt.Trajectory)
    assert np.array_equal(np.asarray(generic.scores), np.asarray(traj.scores))
    # Several runs in one file (Runs) come back by name.
    runs = pt.Runs(gd=traj, flow=pt.flow(problem, 10.0))
    pt.save(tmp_path / "runs.npz", runs, problem=problem)
    again = pt.load(tmp_path / "runs.npz")
    assert isinstance(again, pt.Runs) and sorted(again) == ["flow", "gd"]
    assert np.array_equal(np.asarray(again["flow"].margins), np.asarray(runs["flow"].margins))
    assert again["flow"].steps is None and again["gd"].integrator == "gd"
    with pytest.raises(ValueError, match="holds a runs, not a trajectory"):
        pt.Trajectory.load(tmp_path / "runs.npz")

    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable particles result"):
        pt.Trajectory.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "foreign.npz", loss=np.zeros(3))
    with pytest.raises(ValueError, match="no metadata"):
        pt.Trajectory.load(tmp_path / "foreign.npz")


def test_repr_fits_one_screen():
    text = repr(pt.gd(pt.two_particles(0.3, 0.7), 1.0, 20))
    assert text.startswith("Trajectory(gd") and "status     ok" in text
    assert len(text.splitlines()) <= 12


# ----------------------------------------------------------- observables
def test_observables_at_zero_and_soft_targets():
    S = jnp.zeros((3, 4))
    Y = jax.nn.one_hot(jnp.array([0, 2, 3]), 4)
    p = jnp.array([0.2, 0.3, 0.5])
    # exact up to the rounding of log 4 and a 3-term sum: a few ulps of 1.39 (<= 1e-15)
    assert abs(float(pt.loss(S, p, Y)) - np.log(4)) <= 1e-15
    # Ties go to the first index: only token 0 (target 0) counts as correct.
    assert float(pt.accuracy(S, p, Y)) == pytest.approx(0.2, abs=1e-15)
    assert float(pt.zero_one(S, p, Y)) == pytest.approx(0.8, abs=1e-15)
    S = jnp.array([[3.0, 1.0, -1.0, 0.0]])
    assert float(pt.margins(S, jnp.array([[0.0, 1.0, 0.0, 0.0]]))[0]) == -2.0  # 1 - 3, exact in floats
    q = jnp.array([[0.5, 0.25, 0.25, 0.0]])
    logp = S[0] - np.log(np.exp(np.asarray(S[0])).sum())
    assert float(pt.loss(S, jnp.ones(1), q)) == pytest.approx(-float(q[0] @ logp), abs=1e-14)  # ulps of ~2


def test_loss_is_stable_at_huge_margins():
    S = jnp.array([[800.0, -800.0]])
    Y = jnp.array([[1.0, 0.0]])
    assert float(pt.loss(S, jnp.ones(1), Y)) == 0.0
    assert float(pt.loss(-S, jnp.ones(1), Y)) == 1600.0  # (S_top - S_y) + log1p(e^-1600): exact


def test_loss_keeps_full_relative_precision_at_large_margins():
    """At margin 40 the loss is log(1 + e^-40 + e^-45) ~ 4.2e-18; log_softmax would round it
    to 0. Reference: numpy's log1p of the exact sum (a few ulps)."""
    S = jnp.array([[40.0, 0.0, -5.0], [1.0, 31.0, 2.0]])
    Y = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    p = jnp.array([0.25, 0.75])
    per = np.array([np.log1p(np.exp(-40.0) + np.exp(-45.0)), np.log1p(np.exp(-30.0) + np.exp(-29.0))])
    got = float(pt.loss(S, p, Y))
    want = 0.25 * per[0] + 0.75 * per[1]
    assert got > 0 and abs(got - want) <= 8 * np.finfo(np.float64).eps * want  # a few roundings, relative
    # Soft targets: sum_y q (S_top - S_y) + log1p(...) against the textbook -q . log softmax.
    q = jnp.array([[0.9, 0.1, 0.0]])
    S1 = np.array([40.0, 0.0, -5.0])
    logp = S1 - (40.0 + np.log1p(np.exp(-40.0) + np.exp(-45.0)))
    # round-off of a 2-term sum ~4 (rel 1e-15 ~ 4.5 ulps)
    assert float(pt.loss(S[:1], jnp.ones(1), q)) == pytest.approx(-(0.9 * logp[0] + 0.1 * logp[1]), rel=1e-15)


# --------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: pt.orthogonal(np.array([0.5, -0.1, 0.6])), r"p=.*>= 0"),
        (lambda: pt.orthogonal(np.array([0.5, 0.2])), r"p=.*sum to 1"),
        (lambda: pt.orthogonal(np.array([0.5, np.nan])), r"p=.*finite"),
        (lambda: pt.two_particles(1.5, 0.6), r"corr=1.5.*\[-1, 1\]"),
        (lambda: pt.orthogonal(np.array([0.5, 0.5]), M=2, targets=np.array([0, 2])), r"targets=.*\[0, 2\)"),
        (lambda: pt.Problem.from_embeddings(np.eye(3), np.eye(2), np.ones(3) / 3, np.zeros(3, int)), r"U has shape"),
        (lambda: pt.Problem.from_grams(np.eye(2), np.eye(2), np.ones(3) / 3, np.zeros(3, int)), r"shape"),
        (lambda: pt.Problem.from_grams(np.array([[1.0, 2.0], [2.0, 1.0]]), np.eye(2), [0.5, 0.5], [0, 1]),
         "positive semi-definite"),
        (lambda: pt.gd(pt.two_particles(0.3, 0.6), -1.0, 10), r"lr=-1.0.*> 0"),
        (lambda: pt.gd(pt.two_particles(0.3, 0.6), np.inf, 10), r"lr=inf"),
        (lambda: pt.gd(pt.two_particles(0.3, 0.6), 1.0, -3), r"steps=-3"),
        (lambda: pt.flow(pt.two_particles(0.3, 0.6), 0.0), r"t1=0.0"),
        (lambda: pt.equicorrelated(3, -0.9), r"corr=-0.9.*\[-0.5, 1\]"),
        (lambda: pt.gd_weights(pt.orthogonal(np.array([0.5, 0.5])), 1.0, 3), "needs them"),
        (lambda: pt.gd_weights(pt.two_particles(0.3, 0.6), 1.0, 3, optimizer="lbfgs"), "optimizer='lbfgs'"),
    ],
)
def test_bad_input_names_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_non_finite_run_reports_first_bad_step():
    # Scores of size lr * 1e300 overflow on the first step; softmax(inf) is NaN after that.
    problem = pt.Problem.from_grams(1e300 * np.eye(2), np.eye(2), [0.5, 0.5], [0, 1])
    traj = pt.gd(problem, 1e10, 10)
    assert not traj.ok and int(traj.status) == pt.Status.NON_FINITE == 1
    bad = int(traj.first_bad_step)
    assert 1 <= bad <= 10
    assert np.all(np.isfinite(np.asarray(traj.margins[:bad])))
    assert f"from step {bad}" in traj.message
    # Rows are checked, not steps: a bad row is replayed to find the same exact step.
    for save_every in (5, 10):
        coarse = pt.gd(problem, 1e10, 10, save_every=save_every)
        assert int(coarse.first_bad_step) == bad and int(coarse.status) == pt.Status.NON_FINITE
    logged = pt.gd(problem, 1e10, 10, save_steps=np.array([0, 7, 10]))
    assert int(logged.first_bad_step) == bad


def test_float32_is_opt_in_and_warns():
    problem = pt.two_particles(0.3, 0.6)
    assert problem.dtype == jnp.float64
    with pytest.warns(pt.PrecisionWarning):
        p32 = problem.astype(jnp.float32)
    assert pt.gd(p32, 1.0, 5).loss.dtype == jnp.float32


def test_residual_has_full_precision_at_large_margins():
    """1 - softmax(S)[target] computed without cancellation (compare with exact log-space values)."""
    S = jnp.array([[30.0, 0.0, -5.0]])
    Y = jnp.array([[1.0, 0.0, 0.0]])
    R = np.asarray(pt._observables.residual(S, Y))[0]
    others = np.exp(np.array([-30.0, -35.0]))
    exact_target = -others.sum() / (1 + others.sum())
    # full relative precision: a few ulps of the tiny target entry (1e-15 relative ~ 4.5 ulps);
    # the target entry is minus the sum of the others, so the row sums to zero to the last bit
    # (1e-30 is below one ulp of the entries, 1.3e-29)
    assert abs(R[0] - exact_target) <= 1e-15 * abs(exact_target)
    assert abs(R.sum()) <= 1e-30


def _np_flow(problem, ts):
    """Scores and margins of the flow dS/dt = -G_E diag(p)(softmax(S) - Y) G_U from S0, by
    scipy (numpy RHS)."""
    G_E, G_U, p, Y, S0 = (np.asarray(a) for a in (problem.G_E, problem.G_U, problem.p, problem.Y, problem.S0))

    def rhs(t, s):
        S = s.reshape(Y.shape)
        Z = np.exp(S - S.max(1, keepdims=True))
        return (-G_E @ (p[:, None] * (Z / Z.sum(1, keepdims=True) - Y)) @ G_U).ravel()

    sol = scipy.integrate.solve_ivp(rhs, (0.0, float(ts[-1])), S0.ravel(), method="DOP853", t_eval=ts,
                                    rtol=1e-12, atol=1e-12)
    S = sol.y.T.reshape(-1, *Y.shape)
    f = Y.argmax(1)
    own = S[:, np.arange(len(f)), f]
    other = np.where(np.eye(Y.shape[1], dtype=bool)[f][None], -np.inf, S).max(-1)
    return S, own - other


@pytest.mark.parametrize("d", [
    5,  # d >= N: the explicit Dopri5 on the scores
    3,  # d < N: Kvaerno5 on the span coordinates
])
def test_flow_checkpoint_and_resume_bit_for_bit(tmp_path, d):
    problem = _random_problem(12, 4, 3, d)
    ts = pt.default_times(1e4, 41)
    whole = pt.flow(problem, 1e4, ts=ts, segments=8)
    single = pt.flow(problem, 1e4, ts=ts)
    assert whole.ok and single.ok
    # d < N = 4: the flow runs on the span coordinates with the implicit solver.
    reduced = d < problem.N
    assert single.metadata["coordinates"] == ("reduced" if reduced else "scores")
    assert single.metadata["solver"] == ("Kvaerno5" if reduced else "Dopri5 (particles)")
    # Same flow, other steps: both agree with an independent tight solve (scipy DOP853 in t at
    # rtol = atol = 1e-12, its own error ~1e-10). Tolerance, a heuristic bound: the controller
    # keeps each accepted step's local error below rtol |S| + atol; on this gradient flow of a
    # convex loss the local errors add up without amplification, and a margin is a difference
    # of two scores: 2 x accepted steps x (rtol max|S| + atol) (~3e-5; measured 2e-6 .. 4e-6).
    ref_S, ref = _np_flow(problem, ts)
    for traj in (whole, single):
        bound = 2 * traj.metadata["num_accepted"] * (1e-8 * np.abs(ref_S).max() + 1e-8)
        assert max_abs(traj.margins, ref) <= bound, (max_abs(traj.margins, ref), bound)
    path = tmp_path / "flow.npz"
    # As if interrupted after 3 of 8 segments of ceil(41 / 8) = 6 rows: 18 rows on disk (with
    # the solver the whole run chose: a shorter horizon alone could choose another).
    first = pt.flow(problem, float(ts[17]), ts=ts[:18], segments=3,
                    solver=__import__("diffrax").Kvaerno5() if reduced else None)
    assert first.metadata["settings"]["segment_rows"] == 6
    assert np.array_equal(np.asarray(first.margins), np.asarray(whole.margins)[:18])
    first.save(path)
    with pytest.raises(ValueError, match="segment_rows=6, not 9"):  # ceil(41 / 5) = 9 rows a segment
        pt.flow(problem, 1e4, ts=ts, segments=5, resume=first)
    back = pt.flow(problem, 1e4, ts=ts, segments=8, resume=pt.Trajectory.load(path), checkpoint=path)
    assert np.array_equal(np.asarray(back.margins)[:18], np.asarray(whole.margins)[:18])
    assert np.array_equal(np.asarray(back.margins), np.asarray(whole.margins)), "rows after the resume point"
    assert np.array_equal(np.asarray(back.final_scores), np.asarray(whole.final_scores))
    assert np.array_equal(np.asarray(pt.Trajectory.load(path).margins), np.asarray(whole.margins))


def test_edge_cases_of_runs_and_resume(tmp_path):
    """Zero steps, resuming a finished run, batched rates with resume, members of a batch."""
    P = pt.two_particles(0.5, 0.75)
    zero = pt.gd(P, 1.0, 0)
    assert zero.margins.shape == (1, 2) and np.array_equal(np.asarray(zero.final_scores), np.zeros((2, 2)))
    done = pt.gd(P, 1.0, 10)
    again = pt.gd(P, 1.0, 10, resume=done)
    assert np.array_equal(np.asarray(again.margins), np.asarray(done.margins))
    with pytest.raises(ValueError, match=r"lr=.*> 0"):
        pt.gd(P, [-1.0, 0.5], 5)
    with pytest.raises(ValueError, match="one learning rate"):
        pt.gd(P, [1.0, 0.5], 10, resume=done)
    with pytest.raises(ValueError, match="shape"):
        pt.gd(P, [[1.0, 2.0]], 5)
    batch = pt.gd(P, [1.0, 2.0], 20)
    assert batch[1].metadata["lr"] == 2.0
    assert np.array_equal(np.asarray(batch[1].margins), np.asarray(pt.gd(P, 2.0, 20).margins))
    with pytest.raises(ValueError, match="save_scores"):
        pt.gd(P, 1.0, 20, resume=pt.gd(P, 1.0, 10, save_scores=True))
    with pytest.raises(ValueError, match="non-zero W0"):
        pt.gd_weights(P, 1.0, 3, layer_norm=True)
    # A finished segmented flow resumes to itself (also when segments do not divide the rows).
    f = tmp_path / "flow.npz"
    whole = pt.flow(P, 100.0, segments=20, checkpoint=f)
    back = pt.flow(P, 100.0, segments=20, resume=pt.Trajectory.load(f))
    assert np.array_equal(np.asarray(back.margins), np.asarray(whole.margins))


def test_a_member_of_a_batch_of_rates_resumes():
    P = pt.two_particles(0.5, 0.75)
    batch = pt.gd(P, [1.0, 2.0], 20)
    member = pt.gd(P, 2.0, 40, resume=batch[1])
    assert np.array_equal(np.asarray(member.margins), np.asarray(pt.gd(P, 2.0, 40).margins))


def test_malformed_trajectory_files_are_refused(tmp_path):
    import json

    good = pt.gd(pt.two_particles(0.3, 0.7), 1.0, 5)
    path = tmp_path / "t.npz"
    good.save(path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["__meta__"].tobytes().decode())
    np.savez(tmp_path / "extra.npz", **arrays, bogus=np.zeros(3))
    with pytest.raises(ValueError, match="unexpected arrays"):
        pt.Trajectory.load(tmp_path / "extra.npz")
    del meta["metadata"]
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "noinfo.npz", **arrays)
    with pytest.raises(ValueError, match="corrupt metadata"):
        pt.Trajectory.load(tmp_path / "noinfo.npz")
