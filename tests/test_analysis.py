"""particles.analysis: detectors on hand-made sequences, compare() in every regime, plots hold
the data they claim. Expected values come from construction or from numpy/scipy here."""

import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import particles
import particles.analysis as pa
from benchmarks._grid_baselines import numpy_hitting_times
from particles._trajectory import meta_json

# Tolerances: 1e-12 .. 1e-15 are float64 round-off (a few ulps of the numbers compared, or of
# a short computation repeated a few hundred times); others say why beside them.
EPS = np.finfo(np.float64).eps
ULPS = particles.events.RESOLUTION_ULPS * EPS  # the resolution of GD events: 64 float64 ulps, relative


# ------------------------------------------------------------------ helpers
def make_traj(loss, margins, *, steps=None, t=None, accuracy=None, M=2, integrator="gd", lr=1.0, scores=None):
    """A Trajectory built directly from arrays (answers known by construction).

    The 0-1 loss is 1 - accuracy (exactly 0 where the accuracy is exactly 1).
    """
    loss = np.asarray(loss, np.float64)
    margins = np.asarray(margins, np.float64)
    if margins.ndim == 1:
        margins = margins[:, None]
    T, N = margins.shape
    if steps is None and t is None:
        steps = np.arange(T)
    if accuracy is None:
        accuracy = np.mean(margins > 0, axis=1)
    info = dict(integrator=integrator)
    if integrator != "flow":
        info["lr"] = lr
    return particles.Trajectory(
        t=jnp.asarray(np.asarray(steps if t is None else t, np.float64)),
        steps=None if steps is None else jnp.asarray(np.asarray(steps, np.int64)),
        loss=jnp.asarray(loss),
        zero_one=jnp.asarray(1.0 - np.asarray(accuracy, np.float64)),
        accuracy=jnp.asarray(np.asarray(accuracy, np.float64)),
        margins=jnp.asarray(margins),
        scores=None if scores is None else jnp.asarray(scores),
        final_scores=jnp.zeros((N, M)),
        status=jnp.asarray(0),
        first_bad_step=jnp.asarray(-1),
        info=meta_json(info),
    )


def row(comp, start):
    hits = [r for r in comp.rows if r.quantity.startswith(start)]
    assert hits, f"no row starting with {start!r} in\n{comp.text()}"
    return hits[0]


def np_two_particles(corr, p1, lr, steps):
    """The two-particle GD margin map (paper-notes 3.3) in numpy, rows 0..steps, shape (steps+1, 2)."""
    p2 = 1 - p1
    phi = lambda m: 1.0 / (1.0 + np.exp(m))  # noqa: E731
    m1 = m2 = 0.0
    out = [(m1, m2)]
    for _ in range(steps):
        m1, m2 = (m1 + 2 * lr * (p1 * phi(m1) - corr * p2 * phi(m2)),
                  m2 + 2 * lr * (p2 * phi(m2) - corr * p1 * phi(m1)))
        out.append((m1, m2))
    return np.array(out)


def np_softmax(S):
    Z = np.exp(S - S.max(-1, keepdims=True))
    return Z / Z.sum(-1, keepdims=True)


def np_ce_minimizer(problem):
    """min over W of the population CE, by scipy BFGS on a numpy loss and gradient: (loss, W)."""
    E, U, p, Y = (np.asarray(a, np.float64) for a in (problem.E, problem.U, problem.p, problem.Y))
    d = E.shape[1]

    def loss(w):
        S = E @ w.reshape(d, d).T @ U.T
        z = S - S.max(1, keepdims=True)
        return float(-(p * (Y * (z - np.log(np.exp(z).sum(1, keepdims=True)))).sum(1)).sum())

    def grad(w):
        S = E @ w.reshape(d, d).T @ U.T
        return (U.T @ ((np_softmax(S) - Y) * p[:, None]).T @ E).ravel()

    res = scipy.optimize.minimize(loss, np.zeros(d * d), jac=grad, method="BFGS", options=dict(gtol=1e-12))
    assert np.abs(res.jac).max() < 1e-9, res
    return res.fun, res.x.reshape(d, d)


def np_best_zero_one_planar(problem):
    """Exact min over W of the 0-1 loss for M = 2 classes and d = 2 (arrangement search).

    With two classes the prediction for x depends on δ_x = γ·e_x, γ = Wᵀ(u_0 − u_1) ∈ R² (any
    γ is reachable), class 0 when δ_x ≥ 0 (argmax ties to the first class). The sign pattern
    is constant between the directions orthogonal to some e_x, so the arcs' midpoints, the
    boundary directions themselves and γ = 0 cover every achievable prediction.
    """
    E = np.asarray(problem.E, np.float64)
    p = np.asarray(problem.p, np.float64)
    first = np.asarray(problem.targets) == 0
    normal = np.arctan2(E[:, 1], E[:, 0]) + np.pi / 2
    bounds = np.sort(np.concatenate([normal % (2 * np.pi), (normal + np.pi) % (2 * np.pi)]))
    mids = (bounds + np.diff(np.concatenate([bounds, [bounds[0] + 2 * np.pi]])) / 2)
    angles = np.concatenate([bounds, mids])
    gammas = np.concatenate([np.stack([np.cos(angles), np.sin(angles)], 1), np.zeros((1, 2))])
    delta = gammas @ E.T
    # at a boundary direction δ_x is 0 up to rounding: snap it so that the tie rule applies
    delta = np.where(np.abs(delta) < 1e-12, 0.0, delta)
    wrong = np.where(first[None], delta < 0, delta >= 0)
    return float((wrong @ p).min())


def np_sharpness(problem, S):
    """λ_max of the W-space Hessian Σ_x p(x) (e_x e_xᵀ) ⊗ Cov_{z ~ softmax(S[x])}(u_z), in numpy."""
    E, U, p = (np.asarray(a, np.float64) for a in (problem.E, problem.U, problem.p))
    P = np_softmax(np.asarray(S, np.float64))
    H = 0.0
    for x in range(len(p)):
        mean = P[x] @ U
        cov = (U * P[x][:, None]).T @ U - np.outer(mean, mean)
        H = H + p[x] * np.kron(np.outer(E[x], E[x]), cov)
    return float(np.linalg.eigvalsh(H)[-1])


def spikes_by_definition(loss, rtol):
    """(start index, peak index) of each maximal run of increases L_k - L_{k-1} > rtol |L_{k-1}|."""
    up = np.diff(loss) > rtol * np.abs(loss[:-1])
    out, k = [], 0
    while k < len(up):
        if up[k]:
            j = k
            while j + 1 < len(up) and up[j + 1]:
                j += 1
            out.append((k + 1, j + 1))
            k = j + 1
        else:
            k += 1
    return out


# ---------------------------------------------------------------- detectors
def test_loss_spikes_merge_consecutive_increases():
    L = [3.0, 2.0, 1.0, 1.5, 2.5, 2.0, 1.0, 1.2, 0.5, 0.5 * (1 + 1e-15)]
    tr = make_traj(L, np.zeros(len(L)), steps=np.arange(len(L)) * 10)
    spikes = pa.loss_spikes(tr)
    # By construction: rise 1.0 -> 1.5 -> 2.5 (steps 30, 40) and 1.0 -> 1.2 (step 70); the
    # last rise (1e-15 relative, ~5 ulps) is rounding noise below the GD resolution of 64 ulps.
    assert spikes == [
        pa.Spike(step=30, height=1.5, relative=1.5, peak_step=40),
        pa.Spike(step=70, height=pytest.approx(0.2, abs=1e-15), relative=pytest.approx(0.2, abs=1e-15),
                 peak_step=70),
    ]
    # Zero tolerance: every increase counts, the rounding-size one too.
    assert [s.step for s in pa.loss_spikes(tr, tol=particles.events.Tolerances())] == [30, 70, 90]
    assert pa.loss_spikes(make_traj([3.0, 2.0, 1.0], np.zeros(3))) == []
    with pytest.raises(ValueError, match="loss_rtol=-1"):
        particles.events.Tolerances(loss_rtol=-1.0)
    # The count of events() is the number of spikes, on the same resolution.
    assert int(pa.events(tr)["loss_spikes"]) == 2 and int(pa.events(tr)["loss_increases"]) == 3


def test_sgd_loss_spikes_are_rises_beyond_the_noise():
    """A minibatch loss jitters every step; only a jump past 3x its running median is a spike."""
    rng = np.random.default_rng(0)
    L = 1.0 + 0.2 * rng.random(60)  # noise: every other step "increases"
    L[40:43] = [4.0, 6.0, 5.0]  # one real spike: up at 40, peak at 41
    tr = make_traj(L, np.zeros(60), integrator="sgd")
    (spike,) = pa.loss_spikes(tr)
    assert (spike.step, spike.peak_step) == (40, 41)
    assert spike.height == pytest.approx(6.0 - L[39], abs=1e-15)
    assert spike.relative == pytest.approx((6.0 - L[39]) / L[39], rel=1e-15)
    # The GD definition would see dozens of spikes in the same noise.
    assert len(pa.loss_spikes(tr, tol=particles.events.Tolerances())) > 10


def test_sign_flips_and_oscillations():
    m = np.array([
        [0.0, 0.0, 0.0],
        [1.0, -1.0, 1.0],
        [-1.0, -2.0, 0.0],
        [2.0, -3.0, -1.0],
        [3.0, -4.0, 0.0],
        [4.0, -5.0, 1.0],
    ])
    tr = make_traj(np.linspace(1, 0.1, 6), m)
    # token 0: 0 + - + + (two flips; leaving 0 is not a flip); token 1 never positive;
    # token 2: 0 + 0 - 0 + (zeros keep the previous sign) -> two flips.
    np.testing.assert_array_equal(pa.sign_flips(tr), [2, 0, 2])
    # direction changes: token 0 up, down, up, up, up -> 2; token 1 monotone;
    # token 2 up, down, down, up, up -> 2.
    np.testing.assert_array_equal(pa.oscillations(tr), [2, 0, 2])
    # a period-2 sequence of T rows turns at every interior row
    alt = make_traj(np.ones(10), np.concatenate([[0.0], (-1.0) ** np.arange(9)]))
    np.testing.assert_array_equal(pa.oscillations(alt), [8])  # 0, 1, -1, 1, ...: 9 moves, 8 turns
    np.testing.assert_array_equal(pa.sign_flips(alt), [8])


def test_a_sign_at_the_first_row_counts():
    # + 0 - 0 +: by the definition (a change between m > atol and m < -atol; zeros keep the
    # sign seen before them) two flips; a token right at the start and wrong after one step, one.
    tr = make_traj(np.ones(5), np.array([[1.0, 1.0], [0.0, -1.0], [-1.0, -2.0], [0.0, -3.0], [1.0, -4.0]]))
    np.testing.assert_array_equal(pa.sign_flips(tr), [2, 1])


def test_changes_within_the_resolution_are_not_events():
    """Rounding jitter of a few ulps is neither a turn nor a sign flip (GD resolution: 64 ulps)."""
    jitter = 1.0 + np.array([0, 2, 0, 2, 0, 2, 0]) * EPS  # up and down by 2 ulps
    near0 = np.array([0.0, 1.0, 1e-15, -1e-15, 1e-15, -1e-15, 1.0])  # |m| < 64 ulps: sign unknown
    tr = make_traj(np.ones(7), np.stack([jitter, near0], 1))
    # token 1 at the run's resolution: up, down to ~0, (jitter: no moves), up -> 2 turns, no flip
    np.testing.assert_array_equal(pa.oscillations(tr), [0, 2])
    np.testing.assert_array_equal(pa.sign_flips(tr), [0, 0])
    zero = particles.events.Tolerances()
    # at zero tolerance every change counts: token 0 turns 5 times; token 1 moves
    # up, down, down, up, down, up (4 turns) with signs 0 + + - + - + (4 flips)
    np.testing.assert_array_equal(pa.oscillations(tr, zero), [5, 4])
    np.testing.assert_array_equal(pa.sign_flips(tr, zero), [0, 4])
    # The flow's resolution is the solver's: 1000 x (rtol |m| + atol).
    flow = make_traj(np.ones(4), [1.0, 1.0 + 5e-6, 1.0, 1.0 + 5e-6], t=[0.0, 1.0, 2.0, 3.0], integrator="flow")
    assert particles.events.tolerances_of(flow).margin_atol == pytest.approx(1000 * 1e-8)
    np.testing.assert_array_equal(pa.oscillations(flow), [0])


def test_first_full_accuracy():
    # Full accuracy is zero_one == 0 exactly: 1 - 1e-13 is not full.
    acc = [0.0, 0.5, 1 - 1e-13, 1.0]
    tr = make_traj(np.ones(4), np.zeros(4), steps=[0, 2, 4, 6], accuracy=acc)
    assert pa.first_full_accuracy(tr) == 6
    assert pa.first_full_accuracy(make_traj(np.ones(3), np.zeros(3), accuracy=[0, 0.5, 0.9])) is None
    # Counted from step 0: a run that starts fully right has 0.
    assert pa.first_full_accuracy(make_traj(np.ones(3), np.zeros(3), accuracy=[1, 1, 1])) == 0
    flow = make_traj(np.ones(3), np.zeros(3), t=[0.0, 0.5, 2.5], accuracy=[0, 1, 1], integrator="flow")
    assert pa.first_full_accuracy(flow) == 0.5
    # After a benign spike: first full at 1, lost at 2, full for good from 3.
    spike = make_traj(np.ones(5), np.zeros(5), accuracy=[0, 1, 0.5, 1, 1])
    assert pa.first_full_accuracy(spike) == 1 and pa.full_accuracy_from(spike) == 3
    assert pa.full_accuracy_from(make_traj(np.ones(3), np.zeros(3), accuracy=[1, 1, 0.5])) is None


def test_inputs_outside_the_loss_do_not_count():
    """p = (1, 0): token 1 is wrong at S = 0 (the tie goes to class 0) and never moves (orthogonal,
    no force), yet it has no weight: the run is fully right from step 0."""
    tr = particles.gd(particles.orthogonal(np.array([1.0, 0.0])), 1.0, 5)
    assert np.all(np.asarray(tr.margins)[:, 1] == 0)  # never right: m = 0 loses the tie
    assert pa.first_full_accuracy(tr) == 0 and pa.full_accuracy_from(tr) == 0


def test_detect_cycle_periods():
    k = np.arange(60)
    transient = np.exp(-k)  # decays below tol well before the tail
    two = np.stack([1 + 0.5 * (-1.0) ** k, -2 + 0.25 * (-1.0) ** k], 1) + transient[:, None]
    c = pa.detect_cycle(make_traj(1 + 0.1 * (-1.0) ** k, two))
    assert c.period == 2 and c.period_steps == 2
    np.testing.assert_allclose(c.margins, [[1.5, -1.75], [0.5, -2.25]], atol=1e-12)  # k = 58, 59
    np.testing.assert_allclose(c.loss, [1.1, 0.9], atol=1e-15)
    assert c.amplitude == pytest.approx(1.0, abs=1e-12)
    three = np.sin(2 * np.pi * k / 3)[:, None]
    assert pa.detect_cycle(make_traj(np.ones(60), three)).period == 3
    fixed = pa.detect_cycle(make_traj(np.ones(60), np.ones((60, 2))))
    assert fixed.period == 1 and fixed.amplitude == 0
    # logarithmic growth is not a cycle, and the period must fit in max_period
    assert pa.detect_cycle(make_traj(1 / (k + 1), np.log1p(k)[:, None])) is None
    assert pa.detect_cycle(make_traj(np.ones(60), three), max_period=2) is None
    with pytest.raises(ValueError, match="max_period"):
        pa.detect_cycle(make_traj(np.ones(60), three), max_period=0)


def test_log_slope_matches_polyfit():
    t = np.arange(0, 1001, dtype=np.float64)
    m = np.stack([np.log(3 * np.maximum(t, 1)), 2 * np.log(np.maximum(t, 1)) + 1, np.sqrt(t)], 1)
    tr = make_traj(np.ones(len(t)), m)
    slope = pa.log_slope(tr)
    late = t >= math.sqrt(1000)
    ref = [np.polyfit(np.log(t[late]), m[late, i], 1)[0] for i in range(3)]
    np.testing.assert_allclose(slope[:2], [1.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(slope, ref, rtol=1e-10)  # two least-squares formulas: round-off of ~500 terms
    np.testing.assert_allclose(pa.log_slope(tr, t_min=500.0)[:2], [1.0, 2.0], atol=1e-12)
    with pytest.raises(ValueError, match="t_min"):
        pa.log_slope(tr, t_min=5000.0)


def test_non_finite_rows_stop_the_detectors():
    L = np.array([3.0, 2.0, 2.5, 1.0, np.nan, 5.0])
    m = np.array([0.0, 1.0, -1.0, 1.0, np.nan, -5.0])
    tr = make_traj(L, m, accuracy=[0, 1, 0, 1, 0, 0])
    with pytest.warns(pa.NonFiniteWarning, match="step 4"):
        spikes = pa.loss_spikes(tr)
    assert [s.step for s in spikes] == [2]  # the rise to 5.0 after the NaN is not seen
    with pytest.warns(pa.NonFiniteWarning):
        np.testing.assert_array_equal(pa.sign_flips(tr), [2])
    with pytest.warns(pa.NonFiniteWarning):
        s = pa.summarize(tr)
    assert s["finite"] is False and s["first_bad"] == 4 and s["last"] == 3 and s["loss"] == 1.0
    json.dumps(s)


def test_summarize_is_json_and_batched_is_refused():
    P = particles.two_particles(0.5, 0.75)
    tr = particles.gd(P, jnp.array([1.0, 10.0]), 40)
    with pytest.raises(ValueError, match="traj\\[k\\]"):
        pa.loss_spikes(tr)
    s = pa.summarize(tr[1])
    json.loads(json.dumps(s))
    # Independently: the numpy margin map at η = 10 and the events by their definitions.
    ref = np_two_particles(0.5, 0.75, 10.0, 40)
    full = (ref[:, 0] >= 0) & (ref[:, 1] > 0)  # argmax ties go to class 0 = f*(token 0)
    assert s["finite"] and s["first_full_accuracy"] == int(np.argmax(full)) == 2  # step 1 forgets token 1
    flips = [int(np.sum(np.diff(np.sign(ref[1:, x])) != 0)) for x in range(2)]  # margins are 0 only at row 0
    assert s["sign_flips"] == flips == [0, 1]
    assert s["margins"] == pytest.approx(ref[-1].tolist(), abs=1e-12)  # the same map: round-off only


# ---------------------------------------------------------------- compare
def test_compare_orthogonal_gd_and_flow():
    p = np.asarray(particles.zipf(5))
    P = particles.orthogonal(p, 5)
    comp = pa.compare(P, particles.gd(P, 2.0, 200))
    assert comp.regimes[0] == "orthogonal" and comp.lr == 2.0
    # independent: the scalar recursion of paper-notes 3.1, in numpy
    m, ms = np.zeros(5), [np.zeros(5)]
    for _ in range(200):
        m = m + 2.0 * 5 * p / (np.exp(m) + 4)
        ms.append(m)
    assert row(comp, "margin m(0)").predicted == pytest.approx(m[0], abs=1e-12)
    assert row(comp, "margin m(0)").simulated == pytest.approx(m[0], abs=1e-12)
    assert row(comp, "max over x").simulated < 1e-12
    loss = float(p @ np.log1p(4 * np.exp(-m)))  # L = Σ p log(1 + (M-1) e^{-m})
    assert row(comp, "loss at step 200").simulated == pytest.approx(loss, rel=1e-13)
    assert row(comp, "loss at step 200").abs_error < 1e-13
    lt = row(comp, "loss · ηt")
    assert lt.predicted == pytest.approx(5 * 4 / 5, rel=1e-12)  # N (M-1) / M
    assert lt.simulated == pytest.approx(loss * 2.0 * 200, rel=1e-12)
    # asymptotic: L·ηt -> N(M-1)/M with a relative correction ~ (M-1)/(M log ηt) (4.23 at ηt = 400)
    assert abs(lt.simulated / 4 - 1) < 0.1

    comp = pa.compare(P, particles.flow(P, 1e3))
    # truncation of the flow's solve at rtol = atol = 1e-8 over log time (measured 1.4e-7)
    assert comp.lr is None and row(comp, "max over x").simulated < 1e-5
    # e^m + (M-1) m = M p t + 1 at the predicted margin (the implicit solution, checked directly)
    r = row(comp, "margin m(0)")
    assert math.exp(r.predicted) + 4 * r.predicted == pytest.approx(5 * p[0] * 1e3 + 1, rel=1e-12)
    assert row(comp, "loss · ηt").rel_error < 0.05  # asymptotic (~1/log t): L t = 4.13 against 4 at t = 1e3


def test_compare_two_particles():
    P = particles.two_particles(0.5, 0.75)
    comp = pa.compare(P, particles.gd(P, 10.0, 300))
    assert "two_particles" in comp.regimes
    ref = np_two_particles(0.5, 0.75, 10.0, 300)
    assert row(comp, "first-step margin m(0)").simulated == pytest.approx(10 * (0.75 - 0.5 * 0.25), abs=1e-12)
    assert row(comp, "first-step margin m(1)").predicted == pytest.approx(10 * (0.25 - 0.5 * 0.75), abs=1e-12)
    assert row(comp, "first-step margin m(1)").abs_error < 1e-12
    forget = row(comp, "a token is mispredicted")
    assert forget.predicted is True and forget.agrees  # 0.5 > 0.25 / 0.75
    diff = row(comp, "m(0) - m(1)")
    assert diff.predicted == pytest.approx(math.log(3), rel=1e-15)  # log(p1/p2), paper-notes 3.3
    assert diff.simulated == pytest.approx(ref[-1, 0] - ref[-1, 1], abs=1e-12)
    # asymptotic: m1 - m2 -> log(p1/p2) with an O(1/(η t)) correction (1.3e-3 at step 300)
    assert abs(ref[-1, 0] - ref[-1, 1] - math.log(3)) < 0.01
    # α = 0.2 < 1/3: one step gives full accuracy, and the comparison says so
    P2 = particles.two_particles(0.2, 0.75)
    tr2 = particles.gd(P2, 10.0, 300)
    f2 = row(pa.compare(P2, tr2), "a token is mispredicted")
    assert f2.predicted is False and f2.agrees and pa.first_full_accuracy(tr2) == 1


def test_compare_separable_random_sphere():
    """Margins grow like log t with slope -> 1 for the tightest token, and L·ηt -> ‖W_mm‖²."""
    P = particles.random_sphere(jax.random.PRNGKey(0), 4, 4, 8)
    steps = 100_000
    tr = particles.gd(P, 1.0, steps, save_steps=particles.log_steps(steps, 200))
    comp = pa.compare(P, tr)
    assert comp.regimes == ("separable",)
    # The simulated slope, recomputed here: least squares of m against log t over t >= sqrt(t_last).
    t = np.asarray(tr.t, np.float64)
    late = t >= math.sqrt(steps)
    slopes = [np.polyfit(np.log(t[late]), np.asarray(tr.margins)[late, x], 1)[0] for x in range(4)]
    r = row(comp, "min over x of dm/dlog t")
    assert r.simulated == pytest.approx(min(slopes), rel=1e-9)  # polyfit vs centred sums: round-off
    # Theory: W_t / log t -> W_mm, whose tightest margins are 1; the slope approaches 1 like
    # 1/log t (0.85 at t = 300, 0.984 at t = 1e5 for this seed).
    assert abs(min(slopes) - 1) < 0.03
    # ‖W_mm‖² from scipy: min ‖W‖²_F subject to (u_{f*(x)} - u_y)ᵀ W e_x >= 1 (SLSQP).
    E, U, f = np.asarray(P.E), np.asarray(P.U), np.asarray(P.targets)
    A = np.array([np.outer(U[f[x]] - U[y], E[x]).ravel() for x in range(4) for y in range(4) if y != f[x]])
    qp = scipy.optimize.minimize(lambda w: w @ w, np.zeros(64), jac=lambda w: 2 * w, method="SLSQP",
                                 constraints=[dict(type="ineq", fun=lambda w: A @ w - 1, jac=lambda w: A)],
                                 options=dict(ftol=1e-14, maxiter=1000))
    assert qp.success and (A @ qp.x).min() > 1 - 1e-9
    r = row(comp, "loss · ηt → ‖W_mm‖²")
    assert r.predicted == pytest.approx(qp.fun, rel=1e-8)  # SLSQP stops at ftol 1e-14: 1e-8 is loose
    loss = float(np.asarray(tr.loss)[-1])
    assert r.simulated == pytest.approx(loss * steps, rel=1e-12)
    assert "decays like" in r.holds and abs(loss * steps / qp.fun - 1) < 0.02  # max_margin states the rate: 0.2% here


def test_compare_underparameterized():
    # d = M = 2 < N = 6: a finite W_CE that gives up 0-1 accuracy (gap > 0 for this seed)
    P = particles.random_sphere(jax.random.PRNGKey(0), 6, 2, 2, p=particles.zipf(6, 1.0))
    L_ce, W_ce = np_ce_minimizer(P)
    E, U, p, Y = (np.asarray(a) for a in (P.E, P.U, P.p, P.Y))
    S_ce = E @ W_ce.T @ U.T
    z_ce = float((S_ce.argmax(1) != Y.argmax(1)) @ p)
    best = np_best_zero_one_planar(P)
    assert z_ce - best > 0.05  # the gap exists for this seed (0.08)
    lam = np_sharpness(P, S_ce)
    comp = pa.compare(P, particles.gd(P, 1.0 / lam, 400))  # η λ_max / 2 = 0.5: stable
    assert comp.regimes == ("underparameterized",), comp.text()
    r = row(comp, "loss at step 400 → L(W_CE)")
    # BFGS stops at |∇L| < 1e-9, so its loss is within ~|∇L|²/μ << 1e-12 of the minimum
    # GD at η λ/2 = 0.5 contracts to W_CE geometrically: after 400 steps the gap is round-off
    assert r.predicted == pytest.approx(L_ce, abs=1e-12) and r.abs_error < 1e-10
    assert row(comp, "0-1 loss at step 400 → L01(W_CE)").predicted == pytest.approx(z_ce, abs=1e-15)
    assert row(comp, "min over W of 0-1 loss").predicted == pytest.approx(best, abs=1e-15)
    gap = row(comp, "gap 𝓔")
    assert gap.predicted == pytest.approx(z_ce - best, abs=1e-15) and gap.abs_error < 1e-12
    settles = row(comp, "GD settles")
    assert settles.predicted is True and settles.agrees
    # η λ_max / 2 = 1.5: W_CE is unstable and GD locks into a period-2 cycle
    tr = particles.gd(P, 3.0 / lam, 400)
    settles = row(pa.compare(P, tr), "GD settles")
    assert settles.predicted is False and settles.agrees
    m = np.asarray(tr.margins)
    # period 2, not 1: the cycle is attracting, its tail repeats to round-off (1e-9 is loose),
    # while consecutive rows differ by O(1) (margins swing by ~3)
    assert np.abs(m[-1] - m[-3]).max() < 1e-9 and np.abs(m[-1] - m[-2]).max() > 0.1
    assert pa.detect_cycle(tr).period == 2


def test_compare_renderings_and_errors():
    P = particles.two_particles(0.5, 0.75)
    tr = particles.gd(P, 10.0, 50)
    comp = pa.compare(P, tr)
    text, md = comp.text(), comp.markdown()
    for r in comp.rows:
        assert r.quantity in text and r.quantity.replace("|", "\\|") in md
    head, rule = text.splitlines()[1:3]
    runs = [(mt.start(), mt.end()) for mt in __import__("re").finditer("-+", rule)]
    assert head[runs[1][0]:runs[1][1]].strip() == "predicted" and head.endswith("holds")  # aligned columns
    assert md.count("\n|") == len(comp.rows) + 2
    data = json.loads(json.dumps(comp.to_json()))
    assert [d["quantity"] for d in data] == [r.quantity for r in comp.rows]
    with pytest.raises(ValueError, match="trajectory\\[k\\]"):
        pa.compare(P, particles.gd(P, jnp.array([1.0, 2.0]), 5))
    with pytest.raises(ValueError, match="its own problem"):
        pa.compare(particles.orthogonal(particles.zipf(3)), tr)
    bad = make_traj(np.ones(3), np.zeros((3, 2)), integrator="euler")
    with pytest.raises(ValueError, match="integrator"):
        pa.compare(P, bad)


# ------------------------------------------------------------------ plots
def labelled_lines(ax):
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_gamma_and_landscape_against_weights():
    P = particles.two_particles(0.5, 0.75)
    tr = particles.gd_weights(P, 3.0, 20, save_scores=True, save_weights=True)
    W = np.asarray(tr.W)
    u = np.eye(2)
    gamma = np.einsum("tij,i->tj", W, u[0] - u[1])  # γ = W^T (u_1 - u_2), from the weights
    np.testing.assert_allclose(pa.gamma_of_scores(P, tr.scores), gamma, atol=1e-12)
    np.testing.assert_allclose(pa.gamma_of_margins(P, tr.margins), gamma, atol=1e-12)
    g1, g2, ce, zo = pa.landscape(P, extent=(-2, 3, -1, 4), grid=7)
    # W = (u_1 - u_2) γ^T / 2 has W^T (u_1 - u_2) = γ (|u_1 - u_2|^2 = 2)
    E, p = np.asarray(P.E), np.asarray(P.p)
    for i, j in [(0, 0), (3, 5), (6, 2)]:
        g = np.array([g1[i, j], g2[i, j]])
        Wg = np.outer(u[0] - u[1], g) / 2
        S = E @ Wg.T  # U = I
        logp = S - np.log(np.exp(S).sum(1, keepdims=True))
        assert ce[i, j] == pytest.approx(-(p @ logp[[0, 1], [0, 1]]), abs=1e-12)
        wrong = S.argmax(1) != np.arange(2)
        assert zo[i, j] == pytest.approx(float(wrong @ p), abs=0)


def test_plots_draw_the_data(tmp_path):
    import matplotlib.pyplot as plt

    P = particles.two_particles(0.95, 0.75)
    runs = {"η=10": particles.gd(P, 10.0, 35), "η=1": particles.gd(P, 1.0, 35, save_scores=True)}
    theory = np.stack([np.arange(36.0), -np.arange(36.0)], 1)
    ax = pa.plot_margins(None, runs["η=1"], theory={"theory": (np.arange(36.0), theory)}, logx=True)
    lines = labelled_lines(ax)
    assert set(lines) == {"m(0)", "m(1)", "theory"}
    m = np.asarray(runs["η=1"].margins)
    np.testing.assert_array_equal(lines["m(0)"].get_xdata(), np.arange(1, 36))  # log axis: t = 0 dropped
    np.testing.assert_array_equal(lines["m(1)"].get_ydata(), m[1:, 1])
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 2 and np.array_equal(dashed[1].get_ydata(), -np.arange(1, 36.0))
    assert ax.get_xscale() == "log"

    ax = pa.plot_losses(ax.figure.add_subplot(2, 2, 4), runs["η=10"])
    L = np.asarray(runs["η=10"].loss)
    np.testing.assert_array_equal(labelled_lines(ax)["loss"].get_ydata(), L)
    # η = 10 is past the edge of stability: the spikes, counted here by their definition.
    expected = spikes_by_definition(L, ULPS)
    assert len(expected) >= 1
    (marks,) = [ln for lab, ln in labelled_lines(ax).items() if lab.startswith("spikes")]
    assert marks.get_label() == f"spikes ({len(expected)})"
    np.testing.assert_array_equal(marks.get_xdata(), [j for _, j in expected])  # at the peaks
    z = np.asarray(runs["η=10"].zero_one)
    (twin,) = [a for a in ax.figure.axes if a is not ax and a.get_ylabel().startswith("0-1 loss")]
    (dotted,) = twin.get_lines()
    np.testing.assert_array_equal(dotted.get_ydata(), z)
    log = pa.plot_losses(None, runs["η=10"], logx=True)
    assert log.get_xscale() == "log" and len(labelled_lines(log)["loss"].get_xdata()) == 35

    gam = {k: pa.gamma_of_margins(P, t.margins) for k, t in runs.items()}
    ax2 = pa.plot_landscape(None, P, extent=(-1, 8, -17, 10), trajectories=list(gam.items()))
    for k, g in gam.items():
        np.testing.assert_array_equal(labelled_lines(ax2)[k].get_xydata(), g)
    assert ax2.get_xlim() == (-1, 8) and ax2.get_ylim() == (-17, 10)
    ax3 = pa.plot_sharpness(None, np.arange(5), [1.0, 0.5, 0.3, 0.2, 0.1], lr=10.0)
    assert labelled_lines(ax3)["2/η = 0.2"].get_ydata()[0] == pytest.approx(0.2, rel=1e-15)  # 2 / 10, rounded
    np.testing.assert_array_equal(labelled_lines(ax3)["λ_max"].get_ydata(), [1.0, 0.5, 0.3, 0.2, 0.1])

    fig = pa.figure_for_run(P, runs, title="two particles")
    titles = [a.get_title() for a in fig.axes]
    assert "η=10: margins" in titles and "η=1: margins" in titles and any("γ-plane" in t for t in titles)
    fig.savefig(tmp_path / "d.png")
    plt.close("all")


def test_figure_of_many_tokens_shows_a_handful_of_labelled_lines():
    Q = particles.random_sphere(jax.random.PRNGKey(0), 12, 5, 3)
    tr = particles.gd(Q, 3.0, 30)
    fig = pa.figure_for_run(Q, {"run": tr})
    assert len(fig.axes) >= 3
    ax = fig.axes[0]
    lines = labelled_lines(ax)
    assert len(lines) <= 6, sorted(lines)  # 4 representative tokens and the median, not 12 tokens
    # The representative tokens, chosen here: most frequent, median frequency, rarest, worst at the end.
    p = np.asarray(Q.p)
    m = np.asarray(tr.margins)
    order = np.argsort(-p, kind="stable")
    want = {int(order[0]), int(order[6]), int(order[-1]), int(np.argmin(m[-1]))}
    drawn = {int(lab.split(")")[0][2:]): ln for lab, ln in lines.items() if lab.startswith("m(")}
    assert set(drawn) == want
    for x, ln in drawn.items():
        np.testing.assert_array_equal(ln.get_ydata(), m[1:, x])  # log time: t = 0 dropped
    np.testing.assert_allclose(lines["median over tokens"].get_ydata(), np.median(m[1:], axis=1), rtol=1e-15)


def _diverged_figure():
    P = particles.two_particles(0.5, 0.75)
    good = particles.gd(P, 1.0, 6)
    m = np.asarray(good.margins).copy()
    L = np.asarray(good.loss).copy()
    m[4:] = np.nan
    L[4:] = np.inf
    bad = make_traj(L, m, accuracy=np.asarray(good.accuracy))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN/inf warnings from matplotlib either
        fig = pa.figure_for_run(P, {"diverged": bad})
    return fig, {a.get_title(): a for a in fig.axes if a.get_title()}


def _notes(ax):
    return [t.get_text() for t in ax.texts if "non-finite" in t.get_text()]


def test_plots_annotate_non_finite(tmp_path):
    import matplotlib.pyplot as plt

    fig, panels = _diverged_figure()
    fig.savefig(tmp_path / "bad.png")
    for title in ("diverged: margins", "losses (spikes: ▼)", "losses, log time"):
        assert _notes(panels[title]) == ["non-finite from step 4: not drawn"], title
    for ax in fig.axes:
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), np.float64)
            assert np.all(np.isfinite(y)) and len(y) <= 4, line.get_label()  # rows 0..3 only
    plt.close("all")


def test_gamma_plane_of_a_diverged_run_says_where_it_stopped():
    import matplotlib.pyplot as plt

    _, panels = _diverged_figure()
    (gamma,) = [a for t, a in panels.items() if "γ-plane" in t]
    notes = _notes(gamma)
    plt.close("all")
    assert notes, "no note on the γ-plane"
    assert "step 4" in notes[0] or "row 3" in notes[0], notes


# ------------------------------------------------------ labels, theory curves, phases
def test_label_runs_puts_gd_on_flow_time():
    P = particles.orthogonal(np.array([0.6, 0.4]))
    runs = {"gd_lr0": particles.gd(P, 0.5, 20), "flow": particles.flow(P, 10.0)}
    out = pa.label_runs(runs, {"gd_lr0": 0.5, "flow": None})
    assert set(out) == {"gd η=0.5", "gradient flow"}
    moved = out["gd η=0.5"]
    assert moved.steps is None and np.array_equal(np.asarray(moved.t), 0.5 * np.arange(21))
    alone = pa.label_runs({"gd_lr0": runs["gd_lr0"]}, {"gd_lr0": 0.5})
    assert np.array_equal(np.asarray(alone["gd η=0.5"].steps), np.arange(21))  # no flow: steps stay


def test_theory_curves_against_independent_formulas():
    def brentq_margin(t, px, M):  # e^m + (M-1) m = M p t + 1 (paper-notes 3.1)
        c = M * px * t + 1.0
        return scipy.optimize.brentq(lambda m: np.exp(m) + (M - 1) * m - c, 0.0, np.log(c) + 1.0, xtol=1e-14,
                                     rtol=1e-15)

    p = np.array([0.6, 0.4])
    P = particles.orthogonal(p)
    runs = {"flow": particles.flow(P, 100.0)}
    ((label, (t, m)),) = pa.theory_curves(P, runs, {"flow": None}).items()
    assert "Lambert W" in label
    for k in (5, 100, 200):
        for x in range(2):
            # brentq stops at xtol 1e-14; the Lambert-W evaluation rounds at ~1e-15 relative
            assert m[k, x] == pytest.approx(brentq_margin(t[k], p[x], 2), abs=1e-12)
    T = particles.two_particles(0.5, 0.75)
    gd = {"gd": particles.gd(T, 2.0, 50)}
    ((_, (t, m)),) = pa.theory_curves(T, gd, {"gd": 2.0}).items()
    # paper-notes 3.3: m_x ≈ log(2 (1 - α) η p_x k) at step k
    np.testing.assert_allclose(m, np.log(2 * 0.5 * 2.0 * np.outer(t, [0.75, 0.25])), rtol=1e-14)


def test_phase_diagrams_of_a_sweep():
    g = particles.paper_grid(4)
    s = particles.sweep("two_particles", {"lr": g["lr"], "corr": g["corr"], "p1": g["p1"][:2]}, 200,
                        metrics=["first_full_accuracy", "final_loss"])
    figs = pa.phase_diagrams(s)
    assert set(figs) == {"phase-corr-lr", "phase-p1-lr", "phase-corr-p1"}
    fig = figs["phase-corr-lr"]
    panels = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in panels] == ["first step of 100% accuracy", "final loss (nats)"]
    ax = panels[0]
    assert ax.get_xlabel() == "input correlation α" and ax.get_ylabel() == "learning rate η"
    assert ax.get_yscale() == "log"  # lr is geometric
    # Crosses mark the cells that never reach full accuracy, in the slice p1 = p1[1] (the middle).
    C, L = np.meshgrid(g["corr"], g["lr"], indexing="ij")
    never = numpy_hitting_times(C, np.full(C.shape, g["p1"][1]), L, 200) < 0  # GD on W in numpy
    (crosses,) = [c for c in ax.collections if c.get_label() == "never 100%"]
    assert len(crosses.get_offsets()) == int(never.sum()) >= 4  # corr = 1 never hits
    assert "p1=" in fig._suptitle.get_text()
