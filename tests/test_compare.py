"""analysis.compare, row by row, on the setting each row describes: two particles under GD,
the flow, SGD and descent on W (with and without an optimizer), the tie rule of forgetting,
runs that went non-finite, the regimes a problem is put in, and the table itself.

Every expected value is computed here: the two-particle margin map and the orthogonal
recursion iterated in numpy (paper-notes §3.1, §3.3), the flow of the two margins by scipy's
solve_ivp, the asymptotes written out from the notes. Tolerances: 1e-12 for two float64
implementations of the same few hundred steps of O(1) numbers (round-off); the flow's say why.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

import particles as pt
import particles.analysis as pa
from particles._trajectory import meta_json


def np_two_particles(corr, p1, lr, steps):
    p2 = 1 - p1
    phi = lambda m: 1.0 / (1.0 + np.exp(m))  # noqa: E731
    m = [(0.0, 0.0)]
    for _ in range(steps):
        m1, m2 = m[-1]
        m.append((m1 + 2 * lr * (p1 * phi(m1) - corr * p2 * phi(m2)), m2 + 2 * lr * (p2 * phi(m2) - corr * p1 * phi(m1))))
    return np.array(m)


def wrong(m):
    """Token 0 (class 0) is wrong below 0; token 1 at 0 and below (argmax ties go to class 0)."""
    return (m[..., 0] < 0) | (m[..., 1] <= 0)


def rows_of(comp):
    return {r.quantity: r for r in comp.rows}


def one(comp, start):
    hits = [r for r in comp.rows if r.quantity.startswith(start)]
    assert len(hits) == 1, f"{start!r}: {len(hits)} rows in\n{comp.text()}"
    return hits[0]


# ------------------------------------------------------------ two particles
@pytest.mark.parametrize("corr,p1,forgets", [
    (0.5, 0.75, True),  # α p1 = 0.375 ≥ p2 = 0.25: the rare token 1 is wrong after step 1
    (0.2, 0.75, False),  # α < p2/p1: one step gives full accuracy
    (0.5, 0.25, True),  # p1 < p2: now token 0 is the rare one, and α p2 = 0.375 > p1 = 0.25
    (-0.5, 0.75, False),  # anti-correlated inputs cooperate
])
def test_two_particle_rows_on_gd(corr, p1, forgets):
    lr, steps = 2.0, 120
    P = pt.two_particles(corr, p1)
    comp = pa.compare(P, pt.gd(P, lr, steps))
    ref = np_two_particles(corr, p1, lr, steps)
    p = np.array([p1, 1 - p1])
    assert comp.regimes == ("two_particles", "separable") and comp.integrator == "gd" and comp.lr == lr
    assert one(comp, "max over x, saved steps").simulated < 1e-12  # the exact margin map
    m1 = lr * (p - corr * p[::-1])  # paper-notes 3.3: one step from W = 0
    for x in range(2):
        r = one(comp, f"first-step margin m({x})")
        assert r.predicted == pytest.approx(m1[x], abs=1e-15) and r.simulated == pytest.approx(ref[1, x], abs=1e-12)
    assert bool(wrong(ref[1])) is forgets  # the setting, checked on the numpy map itself
    r = one(comp, "a token is mispredicted after step 1")
    assert (r.predicted, r.simulated) == (forgets, forgets) and r.agrees
    r = one(comp, "a token is mispredicted at some saved step")
    assert r.predicted is forgets and r.simulated == bool(np.any(wrong(ref[1:])))
    T = float(steps)
    for x in range(2):  # m_x ≈ log(2 (1 − α) η p_x t)
        r = one(comp, f"margin m({x}) ≈ log")
        assert r.predicted == pytest.approx(math.log(2 * (1 - corr) * lr * p[x] * T), rel=1e-14)
        assert r.simulated == pytest.approx(ref[-1, x], abs=1e-12)
    loss = float(p @ np.log1p(np.exp(-ref[-1])))  # two classes, U = I: log(1 + e^{-m_x})
    r = one(comp, "loss · ηt")
    assert r.predicted == pytest.approx(1 / (1 - corr), rel=1e-14)
    assert r.simulated == pytest.approx(loss * lr * T, rel=1e-11)
    r = one(comp, "m(0) - m(1)")
    assert r.predicted == pytest.approx(math.log(p[0] / p[1]), rel=1e-15)
    assert r.simulated == pytest.approx(ref[-1, 0] - ref[-1, 1], abs=1e-12)
    assert len(comp.rows) == 9 and comp.notes == ()


def test_two_particle_rows_on_saved_steps_without_step_one():
    """Rows saved every 10 steps: no first-step rows (step 1 is not saved), the rest on saved rows."""
    P = pt.two_particles(0.9, 0.75)
    comp = pa.compare(P, pt.gd(P, 1.0, 100, save_every=10))
    names = list(rows_of(comp))
    assert not any(n.startswith("first-step") or "after step 1" in n for n in names)
    ref = np_two_particles(0.9, 0.75, 1.0, 100)[::10]
    assert one(comp, "max over x, saved steps").simulated < 1e-12
    assert one(comp, "a token is mispredicted at some saved step").simulated == bool(np.any(wrong(ref[1:])))
    assert one(comp, "a token is mispredicted at some saved step ≥ 1 (to step 100)").predicted is True


def test_two_particle_rows_on_the_flow():
    """The flow has no step: no margin-map, first-step or forgetting rows; the asymptotes at
    η = 1 and t = t1, against scipy's solution of the two-margin flow (paper-notes 3.3)."""
    corr, p1, t1 = 0.5, 0.75, 200.0
    P = pt.two_particles(corr, p1)
    traj = pt.flow(P, t1)
    comp = pa.compare(P, traj)
    p = np.array([p1, 1 - p1])

    def rhs(t, m):
        phi = 1 / (1 + np.exp(m))
        return 2 * np.array([p[0] * phi[0] - corr * p[1] * phi[1], p[1] * phi[1] - corr * p[0] * phi[0]])

    ref = scipy.integrate.solve_ivp(rhs, (0, t1), [0.0, 0.0], method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
    assert comp.lr is None and comp.integrator == "flow"
    assert sorted(rows_of(comp)) == sorted(["margin m(0) ≈ log(2(1-α)η p_x t)", "margin m(1) ≈ log(2(1-α)η p_x t)",
                                            "loss · ηt → 1/(1-α)", "m(0) - m(1) → log(p1/p2)"])
    for x in range(2):
        r = one(comp, f"margin m({x})")
        assert r.predicted == pytest.approx(math.log(2 * (1 - corr) * p[x] * t1), rel=1e-14)
        # the flow's truncation at rtol = atol = 1e-8 over ~50 log-time steps (as in test_core)
        assert r.simulated == pytest.approx(ref[x], abs=1e-6)
        assert "ηt=200" in r.holds
    r = one(comp, "loss · ηt")
    assert r.predicted == pytest.approx(2.0, rel=1e-14)
    assert r.simulated == pytest.approx(float(p @ np.log1p(np.exp(-ref))) * t1, rel=1e-6)


def test_two_particle_rows_on_sgd_and_descent_on_w():
    P = pt.two_particles(0.5, 0.75)
    sgd = pa.compare(P, pt.sgd(P, 1.0, 60, 4, 0))
    names = list(rows_of(sgd))
    # SGD is not the margin map: no exact rows, only the criterion and the asymptotes
    assert not any(n.startswith(("max over x", "first-step")) or "after step 1" in n for n in names)
    assert one(sgd, "a token is mispredicted at some saved step").predicted is True
    assert any("full-batch" in n for n in sgd.notes) and sgd.integrator == "sgd"
    w = pt.gd_weights(P, 1.0, 60)
    gdw = pa.compare(P, w)
    ref = np_two_particles(0.5, 0.75, 1.0, 60)
    assert one(gdw, "max over x, saved steps").simulated < 1e-12  # plain descent on W is the map
    assert one(gdw, "first-step margin m(1)").simulated == pytest.approx(ref[1, 1], abs=1e-12)
    assert [r.quantity for r in gdw.rows] == [r.quantity for r in pa.compare(P, pt.gd(P, 1.0, 60)).rows]
    for kwargs in (dict(optimizer="adam"), dict(optimizer="momentum"), dict(layer_norm=True, W0=np.eye(2))):
        other = pa.compare(P, pt.gd_weights(P, 0.1, 20, **kwargs))
        assert other.rows == [] and any("plain GD only" in n for n in other.notes), kwargs
        assert other.regimes == ("two_particles", "separable")


# ------------------------------------------------------------ orthogonal, SGD and others
def test_orthogonal_rows_on_sgd_are_the_gd_recursion():
    p = np.array([0.5, 0.3, 0.2])
    P = pt.orthogonal(p, M=3)
    traj = pt.sgd(P, 1.0, 50, 8, 3)
    comp = pa.compare(P, traj)
    m = np.zeros(3)
    for _ in range(50):
        m = m + 3 * p / (np.exp(m) + 2)  # paper-notes 3.1: m ← m + η M p / (e^m + M − 1)
    for x in range(3):
        r = one(comp, f"margin m({x}) at step 50")
        assert r.predicted == pytest.approx(m[x], abs=1e-12) and r.holds == "GD recursion vs SGD"
        assert r.simulated == float(np.asarray(traj.margins)[-1, x])
    r = one(comp, "loss at step 50")
    assert r.predicted == pytest.approx(float(p @ np.log1p(2 * np.exp(-m))), rel=1e-13)
    assert r.simulated == float(np.asarray(traj.loss)[-1])
    assert any("full-batch" in n for n in comp.notes)


def test_orthogonal_token_rows_pick_frequent_median_and_rare():
    """With more than 4 tokens the rows show the most frequent, the median and the rarest."""
    p = np.array([0.05, 0.4, 0.1, 0.25, 0.2])  # order by p: 1, 3, 4, 2, 0
    P = pt.orthogonal(p, M=2)
    comp = pa.compare(P, pt.gd(P, 1.0, 10))
    tokens = sorted(int(r.quantity[len("margin m("):].split(")")[0]) for r in comp.rows
                    if r.quantity.startswith("margin m("))
    assert tokens == [0, 1, 4]  # rarest 0, most frequent 1, median (index 5 // 2 = 2 of the order) 4
    small = pa.compare(pt.orthogonal(p[:4] / p[:4].sum()), pt.gd(pt.orthogonal(p[:4] / p[:4].sum()), 1.0, 10))
    assert len([r for r in small.rows if r.quantity.startswith("margin m(")]) == 4


def test_the_loss_rate_row_says_where_the_asymptote_holds():
    """η M p t ≫ e^{η p} is needed (orthogonal_asymptote_valid): with η = 100 the frequent
    token (p = 0.9) has margin 90 after one step and is far from its asymptote (e^90 steps),
    the rare ones (e^5 = 148 ≪ η M p t = 5e5) are on it."""
    P = pt.orthogonal(np.array([0.9, 0.05, 0.05]), M=2)
    far = one(pa.compare(P, pt.gd(P, 100.0, 50000, save_every=5000)), "loss · ηt")
    assert "not yet valid for 1 of 3 inputs" in far.holds
    Q = pt.orthogonal(np.array([0.5, 0.3, 0.2]), M=2)
    near = one(pa.compare(Q, pt.gd(Q, 0.5, 20000, save_every=1000)), "loss · ηt")
    # the relative correction is ~(M−1) log(ηMpt)/(ηMpt) <= log(4000)/4000 = 2e-3 < 1%
    assert "valid for every input" in near.holds and near.predicted == pytest.approx(1.5, rel=1e-14)  # N(M−1)/M


def test_compare_on_a_non_finite_run_uses_the_finite_prefix():
    P = pt.two_particles(0.5, 0.75)
    good = pt.gd(P, 1.0, 6)
    m = np.asarray(good.margins).copy()
    L = np.asarray(good.loss).copy()
    m[4:], L[4:] = np.nan, np.inf
    bad = pt.Trajectory(t=good.t, steps=good.steps, loss=jnp.asarray(L), zero_one=good.zero_one,
                        accuracy=good.accuracy, margins=jnp.asarray(m), final_scores=good.final_scores,
                        status=jnp.asarray(1), first_bad_step=jnp.asarray(4), info=good.info)
    comp = pa.compare(P, bad)
    assert any("non-finite values from step 4" in n and "4 rows" in n for n in comp.notes)
    ref = np_two_particles(0.5, 0.75, 1.0, 3)
    assert one(comp, "margin m(1) ≈ log").simulated == pytest.approx(ref[-1, 1], abs=1e-12)  # row 3, not 6
    assert one(comp, "margin m(1) ≈ log").predicted == pytest.approx(math.log(2 * 0.5 * 0.25 * 3), rel=1e-14)
    first = pt.Trajectory(t=good.t, steps=good.steps, loss=jnp.full(7, jnp.inf), zero_one=good.zero_one,
                          accuracy=good.accuracy, margins=good.margins, final_scores=good.final_scores,
                          status=jnp.asarray(1), first_bad_step=jnp.asarray(0), info=good.info)
    empty = pa.compare(P, first)
    assert empty.rows == [] and any("from step 0" in n for n in empty.notes)


def test_the_step_size_comes_from_the_metadata_or_the_caller():
    p = np.array([0.6, 0.3, 0.1])
    P = pt.orthogonal(p, M=2)
    traj = pt.gd(P, 2.0, 30)
    m = np.zeros(3)
    for _ in range(30):
        m = m + 2.0 * 2 * p / (np.exp(m) + 1)
    assert one(pa.compare(P, traj), "margin m(0) at").predicted == pytest.approx(m[0], abs=1e-12)
    # an explicit lr wins over the metadata: the recursion at η = 1 is another prediction
    slow = pa.compare(P, traj, lr=1.0)
    assert slow.lr == 1.0 and one(slow, "margin m(0) at").abs_error > 0.1
    unknown = pt.Trajectory(**{k: getattr(traj, k) for k in ("t", "steps", "loss", "zero_one", "accuracy", "margins",
                                                             "final_scores", "status", "first_bad_step")},
                            info=meta_json(dict(integrator="gd")))
    with pytest.raises(ValueError, match="no numeric lr"):
        pa.compare(P, unknown)
    # rows of a flow are labelled by the last time, those of a discrete run by the last step
    flow = pa.compare(P, pt.flow(P, 1e3, ts=np.array([0.0, 10.0, 1e3])))
    assert flow.rows[0].quantity == "margin m(0) at t=1000"
    assert one(pa.compare(P, pt.gd(P, 2.0, 30, save_every=10)), "margin m(0) at").quantity == "margin m(0) at step 30"
    assert pa.compare(P, unknown, lr=2.0).lr == 2.0


def test_regimes_and_their_descriptions():
    assert pa.regimes(pt.orthogonal(np.array([0.5, 0.3, 0.2]))) == ("orthogonal", "separable")
    assert pa.describe_regime(pt.orthogonal(np.array([0.5, 0.3, 0.2]))) == "orthogonal"
    # the 2 × 2 orthogonal memory is also the two-particle system at α = 0
    assert pa.regimes(pt.orthogonal(np.array([0.5, 0.5]))) == ("orthogonal", "two_particles", "separable")
    # orthogonal Grams but a non-zero start, or soft targets: not the orthogonal closed forms
    start = pt.Problem.from_grams(np.eye(2), np.eye(2), [0.5, 0.5], [0, 1], S0=np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert pa.regimes(start) == ("separable",)
    soft = pt.Problem.from_grams(np.eye(2), np.eye(2), [0.5, 0.5], np.array([[0.7, 0.3], [0.0, 1.0]]))
    assert pa.regimes(soft) == ("separable",)
    assert pa.regimes(pt.two_particles(0.5, 0.7)) == ("two_particles", "separable")
    assert pa.describe_regime(pt.two_particles(0.5, 0.7)).startswith("two particles")
    # |α| = 1: e_2 = ±e_1 spans one dimension of d = 2: not the two-particle system of the
    # notes (unlearnable with different targets), not separable, not d < N either
    assert pa.regimes(pt.two_particles(1.0, 0.7)) == () == pa.regimes(pt.two_particles(-1.0, 0.7))
    assert pa.describe_regime(pt.two_particles(1.0, 0.7)) == "unknown"
    wide = pt.Problem.from_embeddings(np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), np.eye(2), [0.5, 0.3, 0.2],
                                      [0, 1, 0])
    assert pa.regimes(wide) == ("underparameterized",)
    assert pa.describe_regime(wide).startswith("underparameterized")
    sep = pt.random_sphere(0, 4, 4, 8)
    assert pa.regimes(sep) == ("separable",) and pa.describe_regime(sep).startswith("separable")
    one_class = pt.orthogonal(np.array([0.5, 0.5]), M=1)
    assert "separable" not in pa.regimes(one_class)


# ------------------------------------------------------------ the table
def test_rows_and_their_errors():
    r = pa.Row.of("q", 2.0, 2.5, "h")
    assert (r.predicted, r.simulated, r.abs_error, r.rel_error, r.agrees) == (2.0, 2.5, 0.5, 0.25, None)
    r = pa.Row.of("q", -4.0, -3.0, "h")
    assert (r.abs_error, r.rel_error) == (1.0, 0.25)
    assert pa.Row.of("q", 0.0, 0.0, "h").rel_error == 0.0
    assert pa.Row.of("q", 0.0, 1e-3, "h").rel_error == math.inf
    b = pa.Row.of("q", True, np.bool_(False), "h")
    assert (b.predicted, b.simulated, b.abs_error, b.rel_error, b.agrees) == (True, False, None, None, False)
    assert pa.Row.of("q", np.bool_(True), True, "h").agrees is True
    w = pa.Row.worst("q", [[1.0, 0.0], [2.0, 4.0]], [[1.5, 0.25], [2.0, 3.0]], "h")
    # max |sim − pred| = 1.0 (at 4 -> 3); relative over non-zero predictions: max(0.5, 0, 0.25) = 0.5
    assert (w.predicted, w.simulated, w.abs_error, w.rel_error) == (0.0, 1.0, 1.0, 0.5)
    assert pa.Row.worst("q", [0.0, 0.0], [1.0, 2.0], "h").rel_error is None
    assert pa.Row.of("q", 1.0, float("inf"), "h").to_json()["simulated"] == "inf"


def test_table_renderings():
    rows = [pa.Row.of("a|b", 1.0, 1.5, "exact"), pa.Row.of("yes/no", True, True, "exact, step 1"),
            pa.Row("bounds", "≤ 0.5", 0.25, None, None, "an interval"), pa.Row.of("tiny", 1e-5, 2e-5, "x"),
            pa.Row.of("huge", 1e7, 0.0, "y")]
    comp = pa.Comparison(rows, ("orthogonal",), "gd", 0.5, ("a note",))
    text = comp.text().splitlines()
    assert text[0] == "gd, lr=0.5; regimes: orthogonal"
    assert text[1].split() == ["quantity", "predicted", "simulated", "abs", "error", "rel", "error", "holds"]
    cells = {ln.split()[0]: ln.split() for ln in text[3:8]}
    assert cells["a|b"][1:5] == ["1", "1.5", "0.5", "0.5"]
    assert cells["yes/no"][1:5] == ["yes", "yes", "-", "-"]
    assert cells["tiny"][1:5] == ["1.000e-05", "2.000e-05", "1.000e-05", "1"]
    assert cells["huge"][1:5] == ["1.000e+07", "0", "1.000e+07", "1"]
    assert text[-1] == "note: a note" and str(comp) == comp.text()
    md = comp.markdown().splitlines()
    assert md[0] == "*gd, lr=0.5; regimes: orthogonal*" and md[3] == "|:--|--:|--:|--:|--:|:--|"
    assert md[4] == "| a\\|b | 1 | 1.5 | 0.5 | 0.5 | exact |" and md[-1] == "- a note"
    flow = pa.Comparison([], (), "flow").text().splitlines()
    assert flow[0] == "flow; regimes: none recognised" and len(flow) == 3
    assert [d["quantity"] for d in comp.to_json()] == ["a|b", "yes/no", "bounds", "tiny", "huge"]


def test_tie_rule_balanced_frequencies_and_old_descent_metadata():
    P = pt.two_particles(0.5, 0.75)
    base = pt.gd(P, 1.0, 2)
    # a hand-made run whose token 1 ties (m = 0) at step 1: a tie goes to class 0, so it is wrong
    tie = pt.Trajectory(t=base.t, steps=base.steps, loss=base.loss, zero_one=base.zero_one, accuracy=base.accuracy,
                        margins=jnp.array([[0.0, 0.0], [1.0, 0.0], [2.0, 1.0]]), final_scores=base.final_scores,
                        status=base.status, first_bad_step=base.first_bad_step, info=base.info)
    comp = pa.compare(P, tie)
    assert one(comp, "a token is mispredicted after step 1").simulated is True
    assert one(comp, "a token is mispredicted at some saved step").simulated is True
    # token 1 (class 0) at a tie is right: at α = 1/4, p = (0.2, 0.8) its first-step margin
    # η(p₁ − α p₂) is exactly 0 in floats, token 2's is 0.75; every token is right (argmax)
    T = pt.two_particles(0.25, 0.2)
    run = pt.gd(T, 1.0, 2)
    assert np.asarray(run.margins[1]).tolist() == [0.0, 0.75] and float(run.accuracy[1]) == 1.0
    assert one(pa.compare(T, run), "a token is mispredicted after step 1").simulated is False
    # wrong at step 1 only (token 1 negative there): "at some saved step >= 1" includes step 1
    dip = pt.Trajectory(t=base.t, steps=base.steps, loss=base.loss, zero_one=base.zero_one, accuracy=base.accuracy,
                        margins=jnp.array([[0.0, 0.0], [1.0, -0.5], [2.0, 1.0]]), final_scores=base.final_scores,
                        status=base.status, first_bad_step=base.first_bad_step, info=base.info)
    assert one(pa.compare(P, dip), "a token is mispredicted at some saved step").simulated is True
    # p1 = p2: no m(0) − m(1) row (log(p1/p2) = 0 says nothing); the margins stay equal
    B = pt.two_particles(0.5, 0.5)
    balanced = pa.compare(B, pt.gd(B, 1.0, 20))
    assert not any(r.quantity.startswith("m(0) - m(1)") for r in balanced.rows)
    # descent on W saved without optimizer/layer_norm keys (an older file): plain GD, rows
    w = pt.gd_weights(P, 1.0, 20)
    meta = {k: v for k, v in w.metadata.items() if k not in ("optimizer", "layer_norm")}
    old = pt.Trajectory(**{k: getattr(w, k) for k in ("t", "steps", "loss", "zero_one", "accuracy", "margins",
                                                      "final_scores", "status", "first_bad_step")},
                        info=meta_json(meta))
    assert len(pa.compare(P, old).rows) == len(pa.compare(P, w).rows) > 0


def test_an_underparameterized_but_separable_memory_gets_the_separable_rows():
    """d = 2 < N = 3, yet v = (1, -1/2) puts every input on its target's side (e0·v = 1,
    e1·v = -1/2, e2·v = 1/(2√2)): no finite minimiser, the separable predictions apply."""
    E = np.array([[1.0, 0.0], [0.0, 1.0], [2**-0.5, 2**-0.5]])
    P = pt.Problem.from_embeddings(E, np.eye(2), np.array([0.5, 0.3, 0.2]), np.array([0, 1, 0]))
    assert pa.regimes(P) == ("underparameterized",)  # separability needs the max-margin solve
    c = pa.compare(P, pt.gd(P, 1.0, 200))
    assert c.regimes == ("underparameterized", "separable")
    assert "loss · ηt → ‖W_mm‖²" in [r.quantity for r in c.rows]


def test_the_dimension_of_gram_only_inputs_is_their_numerical_rank():
    """G_E = 1000 A Aᵀ + 1e-9 I with A of rank 2: the inputs span 2 dimensions up to 1e-12 of
    the Gram's scale, so the memory is under-parameterised (and full rank at tol 1e-10)."""
    A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    Q = pt.Problem.from_grams(1000 * A @ A.T + 1e-9 * np.eye(3), np.eye(2), np.array([0.5, 0.3, 0.2]),
                              np.array([0, 1, 0]))
    assert pa.regimes(Q) == ("separable", "underparameterized")


def test_a_run_of_zero_steps_is_compared_at_step_0_only():
    O = pt.orthogonal(np.array([0.5, 0.3, 0.2]), 2)
    c = pa.compare(O, pt.gd(O, 1.0, 0))
    assert [r.quantity for r in c.rows] == ["margin m(0) at step 0", "margin m(1) at step 0", "margin m(2) at step 0",
                                            "max over x, saved t of |m - m_theory|", "loss at step 0"]
    assert all(r.simulated == 0.0 for r in c.rows[:3])


def test_a_run_of_another_problem_is_refused():
    three, two = pt.orthogonal(np.array([0.5, 0.3, 0.2]), 2), pt.orthogonal(np.array([0.5, 0.5]), 2)
    with pytest.raises(ValueError, match="its own problem"):
        pa.compare(two, pt.gd(three, 1.0, 5))  # same M, another N


def test_the_median_token_of_an_even_count_is_the_upper_middle_of_the_order():
    """N = 6: the order by decreasing p is 2, 5, 0, 4, 1, 3; the median row is order[6 // 2] = 4."""
    p = np.array([0.2, 0.08, 0.3, 0.02, 0.15, 0.25])
    P = pt.orthogonal(p, M=2)
    tokens = sorted(int(r.quantity[len("margin m("):].split(")")[0]) for r in pa.compare(P, pt.gd(P, 1.0, 5)).rows
                    if r.quantity.startswith("margin m("))
    assert tokens == [2, 3, 4]


def test_the_loss_rate_counts_only_inputs_that_occur():
    """p = (0.5, 0.5, 0): the loss·ηt limit is N(M−1)/M over the two inputs with p > 0, i.e. 1 (M = 2)."""
    P = pt.orthogonal(np.array([0.5, 0.5, 0.0]), M=2)
    row = one(pa.compare(P, pt.gd(P, 0.5, 20000, save_every=1000)), "loss · ηt")
    assert row.predicted == pytest.approx(1.0, rel=1e-14) and "of 2 inputs" not in row.holds


@pytest.mark.parametrize("p1", [0.0, 1.0])
def test_a_token_that_never_occurs_gets_no_log_ratio_row(p1):
    """log(p1/p2) is undefined when one frequency is 0: the row is left out, nothing raises."""
    P = pt.two_particles(0.5, p1)
    comp = pa.compare(P, pt.gd(P, 1.0, 30))
    assert comp.rows and not any("log(p1/p2)" in r.quantity for r in comp.rows)


def test_a_two_particle_run_of_zero_steps_has_no_asymptote_rows():
    P = pt.two_particles(0.5, 0.75)
    comp = pa.compare(P, pt.gd(P, 1.0, 0))
    assert comp.rows and not any("≈ log" in r.quantity or "ηt" in r.quantity for r in comp.rows)


def test_why_a_run_stopped_early_is_said_in_the_notes():
    """A flow out of solver steps is 'stopped before t1'; a diverged GD run is 'non-finite';
    a run that finished says neither."""
    P = pt.two_particles(0.5, 0.75)
    short = pt.flow(P, 1e6, max_steps=3)
    assert not short.ok
    assert any("stopped before t1" in n for n in pa.compare(P, short).notes)
    for fine in (pt.flow(P, 1e3), pt.gd(P, 1.0, 5)):
        assert not any("stopped" in n or "non-finite" in n for n in pa.compare(P, fine).notes)
    good = pt.gd(P, 1.0, 6)
    L = np.asarray(good.loss).copy()
    L[4:] = np.inf
    diverged = pt.Trajectory(t=good.t, steps=good.steps, loss=jnp.asarray(L), zero_one=good.zero_one,
                             accuracy=good.accuracy, margins=good.margins, final_scores=good.final_scores,
                             status=jnp.asarray(pt.Status.NON_FINITE), first_bad_step=jnp.asarray(4), info=good.info)
    notes = pa.compare(P, diverged).notes
    assert any("non-finite values from step 4" in n for n in notes) and not any("flow" in n for n in notes)


def test_compare_takes_lr_by_keyword_only():
    P = pt.two_particles(0.5, 0.75)
    with pytest.raises(TypeError):
        pa.compare(P, pt.gd(P, 1.0, 3), 1.0)


def test_a_yes_no_row_stays_yes_no_whichever_side_is_a_number():
    for predicted, simulated in ((True, 1.0), (1.0, False), (np.bool_(False), 0)):
        r = pa.Row.of("q", predicted, simulated, "h")
        assert r.predicted is bool(predicted) and r.simulated is bool(simulated) and r.abs_error is None
