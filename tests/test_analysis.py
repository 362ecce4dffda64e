"""analysis: detectors on hand-made sequences, compare() in every regime, plots render."""

import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analysis
import particles


# ------------------------------------------------------------------ helpers
def make_traj(loss, margins, *, steps=None, t=None, accuracy=None, M=2, integrator="gd", lr=1.0, scores=None):
    """A Trajectory built directly from arrays (answers known by construction)."""
    loss = np.asarray(loss, np.float64)
    margins = np.asarray(margins, np.float64)
    if margins.ndim == 1:
        margins = margins[:, None]
    T, N = margins.shape
    if steps is None and t is None:
        steps = np.arange(T)
    if accuracy is None:
        accuracy = np.mean(margins > 0, axis=1)
    info = (("integrator", integrator),) + ((("lr", lr),) if integrator != "flow" else ())
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
        info=info,
    )


def theory_fn(name):
    """particles.theory.<name> (an AttributeError here means the theory module lost a name)."""
    from particles import theory

    return getattr(theory, name)


def row(comp, start):
    hits = [r for r in comp.rows if r.quantity.startswith(start)]
    assert hits, f"no row starting with {start!r} in\n{comp.text()}"
    return hits[0]


# ---------------------------------------------------------------- detectors
def test_loss_spikes_merge_consecutive_increases():
    L = [3.0, 2.0, 1.0, 1.5, 2.5, 2.0, 1.0, 1.2, 0.5, 0.5 * (1 + 1e-15)]
    tr = make_traj(L, np.zeros(len(L)), steps=np.arange(len(L)) * 10)
    spikes = analysis.loss_spikes(tr)
    # By construction: rise 1.0 -> 1.5 -> 2.5 (steps 30, 40) and 1.0 -> 1.2 (step 70); the
    # last rise is rounding noise below rel_tol.
    assert spikes == [
        analysis.Spike(step=30, height=1.5, relative=1.5, peak_step=40),
        analysis.Spike(step=70, height=pytest.approx(0.2, abs=1e-15), relative=pytest.approx(0.2, abs=1e-15),
                       peak_step=70),
    ]
    assert len(analysis.loss_spikes(tr, rel_tol=0.0)) == 3
    assert analysis.loss_spikes(make_traj([3.0, 2.0, 1.0], np.zeros(3))) == []
    with pytest.raises(ValueError, match="rel_tol"):
        analysis.loss_spikes(tr, rel_tol=-1.0)


def test_sign_flips_and_oscillations():
    m = np.array([
        [0.0, 0.0, 1.0],
        [1.0, -1.0, 0.0],
        [-1.0, -2.0, -1.0],
        [2.0, -3.0, 0.0],
        [3.0, -4.0, 1.0],
    ])
    tr = make_traj(np.linspace(1, 0.1, 5), m)
    # token 0: + - + (two flips; leaving 0 is not a flip); token 1 never positive;
    # token 2: + 0 - 0 + (zeros keep the previous sign) -> two flips.
    np.testing.assert_array_equal(analysis.sign_flips(tr), [2, 0, 2])
    # direction changes: token 0 up, down, up, up -> 2; token 1 monotone; token 2 down, down, up, up -> 1.
    np.testing.assert_array_equal(analysis.oscillations(tr), [2, 0, 1])
    # a period-2 sequence of T rows turns at every interior row
    alt = make_traj(np.ones(10), (-1.0) ** np.arange(10))
    np.testing.assert_array_equal(analysis.oscillations(alt), [8])
    np.testing.assert_array_equal(analysis.sign_flips(alt), [9])


def test_first_full_accuracy():
    acc = [0.0, 0.5, 1 - 1e-13, 1.0]
    tr = make_traj(np.ones(4), np.zeros(4), steps=[0, 2, 4, 6], accuracy=acc)
    assert analysis.first_full_accuracy(tr) == 4
    assert analysis.first_full_accuracy(make_traj(np.ones(3), np.zeros(3), accuracy=[0, 0.5, 0.9])) is None
    flow = make_traj(np.ones(3), np.zeros(3), t=[0.0, 0.5, 2.5], accuracy=[0, 1, 1], integrator="flow")
    assert analysis.first_full_accuracy(flow) == 0.5


def test_detect_cycle_periods():
    k = np.arange(60)
    transient = np.exp(-k)  # decays below tol well before the tail
    two = np.stack([1 + 0.5 * (-1.0) ** k, -2 + 0.25 * (-1.0) ** k], 1) + transient[:, None]
    c = analysis.detect_cycle(make_traj(1 + 0.1 * (-1.0) ** k, two))
    assert c.period == 2 and c.period_steps == 2
    np.testing.assert_allclose(c.margins, [[1.5, -1.75], [0.5, -2.25]], atol=1e-12)  # k = 58, 59
    np.testing.assert_allclose(c.loss, [1.1, 0.9], atol=1e-15)
    assert c.amplitude == pytest.approx(1.0, abs=1e-12)
    three = np.sin(2 * np.pi * k / 3)[:, None]
    assert analysis.detect_cycle(make_traj(np.ones(60), three)).period == 3
    fixed = analysis.detect_cycle(make_traj(np.ones(60), np.ones((60, 2))))
    assert fixed.period == 1 and fixed.amplitude == 0
    # logarithmic growth is not a cycle, and the period must fit in max_period
    assert analysis.detect_cycle(make_traj(1 / (k + 1), np.log1p(k)[:, None])) is None
    assert analysis.detect_cycle(make_traj(np.ones(60), three), max_period=2) is None
    with pytest.raises(ValueError, match="max_period"):
        analysis.detect_cycle(make_traj(np.ones(60), three), max_period=0)


def test_log_slope_matches_polyfit():
    t = np.arange(0, 1001, dtype=np.float64)
    m = np.stack([np.log(3 * np.maximum(t, 1)), 2 * np.log(np.maximum(t, 1)) + 1, np.sqrt(t)], 1)
    tr = make_traj(np.ones(len(t)), m)
    slope = analysis.log_slope(tr)
    late = t >= math.sqrt(1000)
    ref = [np.polyfit(np.log(t[late]), m[late, i], 1)[0] for i in range(3)]
    np.testing.assert_allclose(slope[:2], [1.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(slope, ref, rtol=1e-10)
    np.testing.assert_allclose(analysis.log_slope(tr, t_min=500.0)[:2], [1.0, 2.0], atol=1e-12)
    with pytest.raises(ValueError, match="t_min"):
        analysis.log_slope(tr, t_min=5000.0)


def test_non_finite_rows_stop_the_detectors():
    L = np.array([3.0, 2.0, 2.5, 1.0, np.nan, 5.0])
    m = np.array([0.0, 1.0, -1.0, 1.0, np.nan, -5.0])
    tr = make_traj(L, m, accuracy=[0, 1, 0, 1, 0, 0])
    with pytest.warns(analysis.NonFiniteWarning, match="step 4"):
        spikes = analysis.loss_spikes(tr)
    assert [s.step for s in spikes] == [2]  # the rise to 5.0 after the NaN is not seen
    with pytest.warns(analysis.NonFiniteWarning):
        np.testing.assert_array_equal(analysis.sign_flips(tr), [2])
    with pytest.warns(analysis.NonFiniteWarning):
        s = analysis.summarize(tr)
    assert s["finite"] is False and s["first_bad"] == 4 and s["last"] == 3 and s["loss"] == 1.0
    json.dumps(s)


def test_summarize_is_json_and_batched_is_refused():
    P = particles.two_particles(0.5, 0.75)
    tr = particles.gd(P, jnp.array([1.0, 10.0]), 40)
    with pytest.raises(ValueError, match="traj\\[k\\]"):
        analysis.loss_spikes(tr)
    s = analysis.summarize(tr[1])
    json.loads(json.dumps(s))
    assert s["finite"] and s["first_full_accuracy"] == 2  # α = 0.5 > p2/p1: step 1 forgets token 1
    assert s["sign_flips"] == [0, 1]
    assert s["margins"] == pytest.approx(np.asarray(tr[1].margins)[-1].tolist(), abs=0)


# ---------------------------------------------------------------- compare
def test_compare_orthogonal_gd_and_flow():
    theory_fn("orthogonal_gd_margin")
    p = np.asarray(particles.zipf(5))
    P = particles.orthogonal(p, 5)
    comp = analysis.compare(P, particles.gd(P, 2.0, 200))
    assert comp.regimes[0] == "orthogonal" and comp.lr == 2.0
    assert row(comp, "max over x").simulated < 1e-12
    assert row(comp, "loss at step 200").abs_error < 1e-13
    # independent check of the exact margin row: the scalar recursion, in numpy
    m = np.zeros(5)
    for _ in range(200):
        m = m + 2.0 * 5 * p / (np.exp(m) + 4)
    assert row(comp, "margin m(0)").predicted == pytest.approx(m[0], abs=1e-12)
    assert row(comp, "loss · ηt").predicted == pytest.approx(5 * 4 / 5, rel=1e-12)

    theory_fn("orthogonal_flow_margin")
    comp = analysis.compare(P, particles.flow(P, 1e3))
    assert comp.lr is None and row(comp, "max over x").simulated < 1e-5
    # e^m + (M-1) m = M p t + 1 at the predicted margin (the implicit solution, checked directly)
    r = row(comp, "margin m(0)")
    assert math.exp(r.predicted) + 4 * r.predicted == pytest.approx(5 * p[0] * 1e3 + 1, rel=1e-12)
    assert row(comp, "loss · ηt").rel_error < 0.05  # asymptotic: L t = 4.13 against 4 at t = 1e3


def test_compare_two_particles():
    theory_fn("two_particles_first_step")
    P = particles.two_particles(0.5, 0.75)
    comp = analysis.compare(P, particles.gd(P, 10.0, 300))
    assert "two_particles" in comp.regimes
    assert row(comp, "first-step margin m(0)").simulated == pytest.approx(10 * (0.75 - 0.5 * 0.25), abs=1e-12)
    assert row(comp, "first-step margin m(1)").abs_error < 1e-12
    forget = row(comp, "a token is mispredicted")
    assert forget.predicted is True and forget.agrees  # 0.5 > 0.25 / 0.75
    assert row(comp, "m(0) - m(1)").abs_error < 0.01  # → log 3
    # α = 0.2 < 1/3: one step gives full accuracy, and the comparison says so
    P2 = particles.two_particles(0.2, 0.75)
    tr2 = particles.gd(P2, 10.0, 300)
    f2 = row(analysis.compare(P2, tr2), "a token is mispredicted")
    assert f2.predicted is False and f2.agrees and analysis.first_full_accuracy(tr2) == 1


def test_compare_separable_random_sphere():
    P = particles.random_sphere(jax.random.PRNGKey(0), 4, 4, 8)
    comp = analysis.compare(P, particles.gd(P, 1.0, 300))
    assert comp.regimes == ("separable",)
    assert row(comp, "min over x of dm/dlog t").predicted == 1.0
    theory_fn("max_margin")
    r = row(comp, "loss · ηt → ‖W_mm‖²")
    assert "slow" in r.holds and r.rel_error < 0.2


def test_compare_underparameterized():
    theory_fn("ce_minimizer")
    theory_fn("best_zero_one")
    sharpness = theory_fn("sharpness")
    from particles import theory

    # d = M = 2 < N = 6: a finite W_CE that gives up 0-1 accuracy (gap > 0 for this seed)
    P = particles.random_sphere(jax.random.PRNGKey(0), 6, 2, 2, p=particles.zipf(6, 1.0))
    lam = float(sharpness(P, theory.ce_minimizer(P).scores))
    comp = analysis.compare(P, particles.gd(P, 1.0 / lam, 400))  # η λ_max / 2 = 0.5: stable
    assert comp.regimes == ("underparameterized",), comp.text()
    assert row(comp, "loss at step 400 → L(W_CE)").abs_error < 1e-10
    gap = row(comp, "gap 𝓔")
    assert gap.predicted > 0 and gap.abs_error < 1e-12
    assert row(comp, "GD settles").predicted is True and row(comp, "GD settles").agrees
    # η λ_max / 2 = 1.5: W_CE is unstable and GD locks into a period-2 cycle
    tr = particles.gd(P, 3.0 / lam, 400)
    settles = row(analysis.compare(P, tr), "GD settles")
    assert settles.predicted is False and settles.agrees
    assert analysis.detect_cycle(tr).period == 2


def test_compare_renderings_and_errors():
    theory_fn("two_particles_first_step")
    P = particles.two_particles(0.5, 0.75)
    tr = particles.gd(P, 10.0, 50)
    comp = analysis.compare(P, tr)
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
        analysis.compare(P, particles.gd(P, jnp.array([1.0, 2.0]), 5))
    with pytest.raises(ValueError, match="its own problem"):
        analysis.compare(particles.orthogonal(particles.zipf(3)), tr)
    bad = make_traj(np.ones(3), np.zeros((3, 2)), integrator="euler")
    with pytest.raises(ValueError, match="integrator"):
        analysis.compare(P, bad)


# ------------------------------------------------------------------ plots
def test_gamma_and_landscape_against_weights():
    P = particles.two_particles(0.5, 0.75)
    tr = particles.gd_weights(P, 3.0, 20, save_scores=True, save_weights=True)
    W = np.asarray(tr.W)
    u = np.eye(2)
    gamma = np.einsum("tij,i->tj", W, u[0] - u[1])  # γ = W^T (u_1 - u_2), from the weights
    np.testing.assert_allclose(analysis.gamma_of_scores(P, tr.scores), gamma, atol=1e-12)
    np.testing.assert_allclose(analysis.gamma_of_margins(P, tr.margins), gamma, atol=1e-12)
    g1, g2, ce, zo = analysis.landscape(P, extent=(-2, 3, -1, 4), grid=7)
    # W = (u_1 - u_2) γ^T / 2 has W^T (u_1 - u_2) = γ (|u_1 - u_2|^2 = 2)
    for i, j in [(0, 0), (3, 5), (6, 2)]:
        g = np.array([g1[i, j], g2[i, j]])
        Wg = np.outer(u[0] - u[1], g) / 2
        assert ce[i, j] == pytest.approx(float(particles.weight_loss(jnp.asarray(Wg), P)), abs=1e-12)
        S = np.asarray(particles.weight_scores(P, jnp.asarray(Wg)))
        assert zo[i, j] == pytest.approx(float(particles.zero_one(jnp.asarray(S), P.p, P.Y)), abs=0)


def test_plots_render(tmp_path):
    import matplotlib.pyplot as plt

    P = particles.two_particles(0.95, 0.75)
    runs = {"η=10": particles.gd(P, 10.0, 35), "η=1": particles.gd(P, 1.0, 35, save_scores=True)}
    ax = analysis.plot_margins(None, runs["η=1"], theory={"theory": (np.arange(36.0), np.ones((36, 2)))}, logx=True)
    analysis.plot_losses(ax.figure.add_subplot(2, 2, 4), runs["η=10"])
    ax.figure.savefig(tmp_path / "a.png")
    ax2 = analysis.plot_landscape(None, P, extent=(-1, 8, -17, 10),
                                  trajectories=[(k, analysis.gamma_of_margins(P, t.margins)) for k, t in runs.items()])
    ax2.figure.savefig(tmp_path / "b.png")
    ax3 = analysis.plot_sharpness(None, np.arange(5), [1.0, 0.5, 0.3, 0.2, 0.1], lr=10.0)
    ax3.figure.savefig(tmp_path / "c.png")
    fig = analysis.figure_for_run(P, runs, title="two particles")
    fig.savefig(tmp_path / "d.png")
    Q = particles.random_sphere(jax.random.PRNGKey(0), 12, 5, 3)
    fig = analysis.figure_for_run(Q, {"run": particles.gd(Q, 3.0, 30)})
    assert len(fig.axes) >= 3
    fig.savefig(tmp_path / "e.png")
    for name in "abcde":
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    plt.close("all")


def test_plots_annotate_non_finite(tmp_path):
    import matplotlib.pyplot as plt

    P = particles.two_particles(0.5, 0.75)
    good = particles.gd(P, 1.0, 6)
    m = np.asarray(good.margins).copy()
    L = np.asarray(good.loss).copy()
    m[4:] = np.nan
    L[4:] = np.inf
    bad = make_traj(L, m, accuracy=np.asarray(good.accuracy))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN/inf warnings from matplotlib either
        fig = analysis.figure_for_run(P, {"diverged": bad})
        fig.savefig(tmp_path / "bad.png")
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum("non-finite from step 4" in n for n in notes) == 4  # margins, losses, log time, γ-plane
    for ax in fig.axes[:3]:
        for line in ax.get_lines():
            assert np.all(np.isfinite(np.asarray(line.get_ydata(), np.float64)))
    assert (tmp_path / "bad.png").stat().st_size > 1000
    plt.close("all")
