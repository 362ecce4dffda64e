"""The gradient flow in every regime: to t = 1e8 without max_steps, against scipy's stiff
solvers and the cross-entropy minimiser, and runs that stop early say why."""

import jax
import numpy as np
import pytest
import scipy.integrate

import particles as pt
import particles.analysis as pa


def _under(N=20, d=5, M=4, a=1.5, seed=0):
    """The regime of paper §3.4 as a researcher builds it: d < N, U = first rows of I."""
    E = np.array(jax.random.normal(jax.random.key(seed), (N, d)))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    return pt.Problem.from_embeddings(E, np.eye(d)[:M], pt.zipf(N, a), np.arange(N) % M)


def _scipy_flow(problem, ts):
    """dS/dt = -G_E diag(p) (softmax(S) - Y) G_U in t, by scipy's Radau (implicit, its own
    finite-difference Jacobian): independent of diffrax and of the log-time change."""
    G_E, G_U = np.asarray(problem.G_E), np.asarray(problem.G_U)
    p, Y, (N, M) = np.asarray(problem.p), np.asarray(problem.Y), problem.Y.shape

    def f(t, y):
        S = y.reshape(N, M)
        P = np.exp(S - S.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        return (-G_E @ (p[:, None] * (P - Y)) @ G_U).ravel()

    sol = scipy.integrate.solve_ivp(f, (0, ts[-1]), np.asarray(problem.S0).ravel(), method="Radau", t_eval=ts,
                                    rtol=1e-11, atol=1e-13)
    assert sol.success
    return sol.y.T.reshape(len(ts), N, M)


def test_underparameterized_flow_reaches_1e8_and_the_ce_minimiser():
    problem = _under()
    traj = pt.flow(problem, 1e8)
    assert traj.ok and traj.metadata["coordinates"] == "reduced" and traj.metadata["solver"] == "Kvaerno5"
    assert traj.metadata["steady_state_t"] is not None and traj.metadata["num_steps"] < 4000
    ce = pt.theory.ce_minimizer(problem, tol=1e-12)
    # The flow stops where |dS/ds| <= 1e-8 (1 + |S|): its loss is then within ~1e-12 of the
    # minimum (the loss gap is quadratic in the distance); 1e-8 is the bar.
    assert abs(float(traj.loss[-1]) - float(ce.loss)) <= 1e-8
    np.testing.assert_allclose(traj.final_scores, ce.scores, atol=1e-6)
    # Rows after the rest hold the final state, and nothing there counts as an oscillation.
    rest = np.asarray(traj.t) >= traj.metadata["steady_state_t"]
    assert np.all(np.asarray(traj.margins)[rest] == np.asarray(traj.margins)[-1])
    tol = pt.events.tolerances_of(traj)
    tail = pt.events.of_rows(np.asarray(traj.t)[rest], np.asarray(traj.loss)[rest], np.asarray(traj.margins)[rest],
                             np.asarray(traj.zero_one)[rest] == 0, tol)
    assert tail["oscillations"].sum() == 0 and tail["sign_flips"].sum() == 0


def test_flow_matches_scipy_radau_in_t():
    problem = _under(N=12, d=3, M=3, seed=1)
    ts = pt.default_times(1e4, 41)
    traj = pt.flow(problem, 1e4, ts=ts, save_scores=True)
    ref = _scipy_flow(problem, ts)
    # Both solvers run at ~1e-8 (ours) and 1e-11 (scipy) local tolerance: agreement to 1e-6
    # in the scores over 41 saved times leaves room for the accumulated global error.
    np.testing.assert_allclose(np.asarray(traj.scores), ref, atol=1e-6, rtol=0)


def test_separable_flow_to_1e8_in_few_steps_matches_the_closed_form():
    p = np.asarray(pt.zipf(5, 1.0))
    problem = pt.orthogonal(p, M=3, targets=np.arange(5) % 3)
    traj = pt.flow(problem, 1e8)
    assert traj.ok and traj.metadata["solver"] == "Dopri5 (particles)"
    assert traj.metadata["steady_state_t"] is None  # margins keep growing like log t
    m = np.asarray(pt.theory.orthogonal_flow_margin(np.asarray(traj.t)[:, None], p[None, :], 3))
    # Every saved row is a step's end (no interpolant): measured 2e-10 from the closed form.
    np.testing.assert_allclose(traj.margins, m, atol=1e-8, rtol=0)
    # Saving only the ends, the solver chooses its own steps: about fifty to t = 1e8
    # (measured 56, 3 of them rejected; diffrax's Dopri5 with its default controller takes 51).
    ends = pt.flow(problem, 1e8, ts=np.array([0.0, 1e8]))
    assert ends.metadata["num_steps"] < 80 and ends.metadata["num_rejected"] < 10
    np.testing.assert_allclose(ends.margins, m[[0, -1]], atol=1e-7, rtol=0)


def test_a_flow_that_runs_out_of_steps_says_why_and_what_to_change():
    problem = _under(N=12, d=3, M=3, seed=1)
    traj = pt.flow(problem, 1e8, max_steps=20)
    assert int(traj.status) == pt.Status.MAX_STEPS and not traj.ok
    assert "max_steps" in traj.message and "raise max_steps" in traj.message
    comp = pa.compare(problem, traj)
    assert any("max_steps" in n for n in comp.notes) and not any("non-finite" in n for n in comp.notes)
    # Solving the stiff problem on the scores with the explicit solver: the same honest answer.
    grams = pt.Problem.from_grams(problem.G_E, problem.G_U, problem.p, problem.targets)
    stiff = pt.flow(grams, 1e8, max_steps=500)
    assert int(stiff.status) == pt.Status.MAX_STEPS and "Kvaerno5" in stiff.message


def test_flow_resume_refuses_other_settings(tmp_path):
    problem = pt.two_particles(0.5, 0.7)
    ck = tmp_path / "f.npz"
    whole = pt.flow(problem, 1e3, segments=4, checkpoint=ck)
    assert pt.Trajectory.load(ck).metadata["settings"]["segment_rows"] == 51
    with pytest.raises(ValueError, match="rtol"):
        pt.flow(problem, 1e3, segments=4, rtol=1e-6, resume=pt.Trajectory.load(ck))
    with pytest.raises(ValueError, match="segment"):
        pt.flow(problem, 1e3, segments=5, resume=pt.Trajectory.load(ck))
    with pytest.raises(ValueError, match="segmented flow"):
        pt.flow(problem, 1e3, segments=4, resume=pt.gd(problem, 1.0, 3))
    again = pt.flow(problem, 1e3, segments=4, resume=pt.Trajectory.load(ck))
    np.testing.assert_array_equal(again.margins, whole.margins)


def test_default_times_and_argument_checks():
    # evenly spaced in log(1 + t): t_k = (1 + t1)^(k / (n − 1)) − 1
    t = pt.default_times(1e6, 5)
    want = (1 + 1e6) ** (np.arange(5) / 4) - 1
    np.testing.assert_allclose(t, want, rtol=1e-12, atol=0)  # expm1/log1p against pow: round-off
    assert t[0] == 0.0 and len(pt.default_times(10.0)) == 201
    P = pt.two_particles(0.5, 0.75)
    traj = pt.flow(P, 10.0, ts=np.array([0.0, 10.0]))
    assert np.asarray(traj.t).tolist() == [0.0, 10.0] and traj.steps is None
    bad = [
        (dict(ts=np.zeros((2, 2))), "ts has shape"), (dict(ts=np.zeros(0)), "ts has shape"),
        (dict(ts=np.array([0.0, 20.0])), "ts="), (dict(ts=np.array([-1.0, 5.0])), "ts="),
        (dict(ts=np.array([0.0, 5.0, 2.0])), "ts="), (dict(ts=np.array([0.0, np.nan])), "ts="),
        (dict(solver="Tsit5"), "solver="), (dict(rtol=0.0), "rtol="), (dict(atol=-1.0), "atol="),
        (dict(max_steps=0), "max_steps="), (dict(segments=-1), "segments="),
        (dict(segments=2, ts=np.array([0.0, 5.0])), "must be t1"),
    ]
    for kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            pt.flow(P, 10.0, **kwargs)
    with pytest.raises(ValueError, match="t1="):
        pt.flow(P, -1.0)
    with pytest.raises(ValueError, match="traced"):
        jax.jit(lambda t1: pt.flow(P, t1).loss)(10.0)
    # the last time may exceed t1 by rounding only (1e-12 relative)
    assert pt.flow(P, 10.0, ts=np.array([0.0, 10.0 * (1 + 1e-13)])).ok


def test_zero_segments_are_refused():
    with pytest.raises(ValueError, match="segments="):
        pt.flow(pt.two_particles(0.5, 0.75), 10.0, segments=0)


def test_a_failed_segment_ends_the_flow_and_is_not_resumed(tmp_path):
    """max_steps = 3 cannot reach t = 1e6: the first segment fails, later rows hold inf, the
    status says why, and such a run is not continued."""
    P = pt.two_particles(0.5, 0.75)
    ts = pt.default_times(1e6, 9)
    failed = pt.flow(P, 1e6, ts=ts, segments=3, max_steps=3, checkpoint=tmp_path / "f.npz")
    assert int(failed.status) == pt.Status.MAX_STEPS and "max_steps" in failed.message
    loss = np.asarray(failed.loss)
    assert np.all(np.isinf(loss[3:])) and loss.shape == (9,)
    with pytest.raises(ValueError, match="failed flow"):
        pt.flow(P, 1e6, ts=ts, segments=3, max_steps=3, resume=pt.Trajectory.load(tmp_path / "f.npz"))
    whole = pt.flow(P, 1e6, ts=ts, segments=3)
    single = pt.flow(P, 1e6, ts=ts)
    assert whole.ok and whole.metadata["settings"]["segment_rows"] == 3
    # segments and one solve differ by the controller's truncation only (rtol = atol = 1e-8)
    np.testing.assert_allclose(whole.margins, single.margins, atol=1e-6)
    assert whole.metadata["num_steps"] == (whole.metadata["num_accepted"] + whole.metadata["num_rejected"])


def test_the_reduced_coordinates_are_the_same_flow():
    """d < N: the flow on the span coordinates K (S = S_⊥ + F Kᵀ Hᵀ) equals the flow on the
    scores (an explicit solve on the Grams) where both are accurate (t ≤ 100, not yet stiff)."""
    problem = _under(N=6, d=2, M=2, seed=2)
    ts = np.array([0.0, 1.0, 10.0, 100.0])
    reduced = pt.flow(problem, 100.0, ts=ts, rtol=1e-10, atol=1e-10, save_scores=True)
    grams = pt.Problem.from_grams(problem.G_E, problem.G_U, problem.p, problem.targets)
    full = pt.flow(grams, 100.0, ts=ts, rtol=1e-10, atol=1e-10, save_scores=True)
    assert reduced.metadata["coordinates"] == "reduced" and full.metadata["coordinates"] == "scores"
    # two solves at 1e-10: truncation ~1e3 × 1e-10 (particles.events.FLOW_TOLERANCE_FACTOR)
    np.testing.assert_allclose(reduced.scores, full.scores, atol=1e-6)
    np.testing.assert_allclose(reduced.scores, _scipy_flow(problem, ts), atol=1e-6)
    explicit = pt.flow(problem, 100.0, ts=ts, solver=__import__("diffrax").Tsit5())
    assert explicit.metadata["solver"] == "Tsit5" and explicit.metadata["coordinates"] == "reduced"


def test_the_solver_on_the_span_coordinates_follows_the_stiffness():
    """`theory.sharpness_bound` is above λ_max of `jax.hessian` of the loss in W (random W and W = 0);
    a horizon with (1 + t1)·bound below `EXPLICIT_STIFFNESS` gets the explicit Dopri5, one above Kvaerno5,
    and both solve the flow that scipy's Radau solves (atol 1e-6: two solves at rtol 1e-8
    over a few hundred units of time, as in the test above)."""
    from particles import _flow

    problem = _under(N=6, d=2, M=2, seed=2)
    bound = pt.theory.sharpness_bound(problem)
    rng = np.random.default_rng(4)
    for W in [np.zeros((2, 2))] + [3 * rng.normal(size=(2, 2)) for _ in range(6)]:
        H = np.asarray(jax.hessian(pt.weight_loss)(jax.numpy.asarray(W), problem)).reshape(4, 4)
        assert np.linalg.eigvalsh(H)[-1] <= bound * (1 + 1e-12)
    for factor, solver in ((0.5, "Dopri5 (particles)"), (2.0, "Kvaerno5")):
        t1 = factor * _flow.EXPLICIT_STIFFNESS / bound
        ts = np.array([0.0, 1.0, t1])
        traj = pt.flow(problem, t1, ts=ts, save_scores=True)
        assert traj.ok and traj.metadata["coordinates"] == "reduced" and traj.metadata["solver"] == solver
        np.testing.assert_allclose(traj.scores, _scipy_flow(problem, ts), atol=1e-6)
