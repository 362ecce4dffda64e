"""Sweeps: the cell against an independent W-space numpy loop, the margin-map kernel against
the generic cell (bit for bit on the paper's grid), families, chunking and sharding,
compilation, SGD and random init inside sweeps, checkpoint and resume, bad input."""

import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import particles as pt
from benchmarks._grid_baselines import numpy_hitting_times
from particles._cell import INIT_KEY, run_cell

from helpers import compilations

ULPS = 64 * np.finfo(np.float64).eps  # the resolution of GD events (particles.events.RESOLUTION_ULPS)


def _reference(n, corr, p, lr, steps):
    """GD on W in numpy with explicit embeddings, and the events by their definitions."""
    a = np.sqrt(1 - corr)
    b = (np.sqrt(1 - corr + n * corr) - a) / n
    E = a * np.eye(n) + b * np.ones((n, n))  # rows e_x, <e_x, e_x'> = corr
    W, rows = np.zeros((n, n)), []
    for k in range(steps + 1):
        S = E @ W.T
        z = S - S.max(1, keepdims=True)
        P = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        loss = -(p * np.log(P[np.arange(n), np.arange(n)])).sum()
        m = np.array([S[x, x] - np.max(np.delete(S[x], x)) for x in range(n)])
        rows.append((loss, m, bool(np.all(S.argmax(1) == np.arange(n)))))
        W = W - lr * (P - np.eye(n)).T @ np.diag(p) @ E
    L = np.array([r[0] for r in rows])
    full = [r[2] for r in rows]
    up = L[1:] - L[:-1] > ULPS * np.abs(L[:-1])
    stays = next((k for k in range(len(full)) if all(full[k:])), -1)
    return dict(first_full_accuracy=full.index(True) if any(full) else -1, full_accuracy_from=stays,
                loss_increases=int(up.sum()), loss_spikes=int(np.sum(up & ~np.concatenate([[False], up[:-1]]))),
                max_spike=float(np.max(L - np.minimum.accumulate(L))), final_loss=L[-1],
                final_min_margin=rows[-1][1].min())


@pytest.mark.parametrize("n,corr,p1,lr", [(2, 0.95, 0.75, 10.0), (2, 0.5, 0.6, 1.0), (3, 0.3, 0.5, 5.0)])
def test_cell_matches_w_space_reference(n, corr, p1, lr):
    steps = 60
    axes = dict(lr=[lr], corr=[corr], p1=[p1], n=[n])
    out = {k: v.item() for k, v in pt.sweep("equicorrelated", axes, steps).outputs.items()}
    ref = _reference(n, corr, np.concatenate([[p1], np.full(n - 1, (1 - p1) / (n - 1))]), lr, steps)
    for k in ("first_full_accuracy", "full_accuracy_from", "loss_increases", "loss_spikes"):
        assert out[k] == ref[k], k
    # Two implementations of 60 steps of the same map: round-off of order 1e-13 at most.
    for k in ("max_spike", "final_loss", "final_min_margin"):
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-9, atol=1e-12, err_msg=k)
    assert out["status"] == pt.Status.OK and out["first_bad_step"] == -1


def test_the_benign_spike_is_seen_by_the_cell_and_the_detectors_alike(tmp_path, capsys):
    """p1 = 0.75, corr = 0.95, lr = 10: full accuracy at step 2, lost, then for good from 15 —
    the same numbers from a sweep cell, the analysis detectors and simulate.py's summary."""
    problem = pt.two_particles(0.95, 0.75)
    cell = {k: int(v) for k, v in run_cell(problem, 10.0, 35, jax.random.key(0)).items() if k != "max_spike"
            and k not in ("final_loss", "final_min_margin")}
    import particles.analysis as pa

    rows = pa.events(pt.gd(problem, 10.0, 35))
    assert cell["first_full_accuracy"] == rows["first_full_accuracy"] == 2
    assert cell["full_accuracy_from"] == rows["full_accuracy_from"] == 15
    assert cell["loss_spikes"] == rows["loss_spikes"] == len(pa.loss_spikes(pt.gd(problem, 10.0, 35))) >= 1
    assert cell["margin_oscillations"] == int(rows["oscillations"].sum())
    assert cell["sign_flips"] == int(rows["sign_flips"].sum())
    from particles.cli import _common, simulate

    argv = ["--n", "2", "--corr", "0.95", "--p", "0.75,0.25", "--lr", "10", "--steps", "35", "--no-flow",
            "--no-plot", "--json", "--quiet", "--out", str(tmp_path / "run")]
    assert _common.run_main(simulate.main, argv, prog="simulate.py") == 0
    summary = json.loads(capsys.readouterr().out)["results"]["gd_lr0"]["summary"]
    assert summary["first_full_accuracy"] == 2 and summary["full_accuracy_from"] == 15
    assert summary["spikes"] == cell["loss_spikes"]
    assert sum(summary["oscillations"]) == cell["margin_oscillations"]
    assert sum(summary["sign_flips"]) == cell["sign_flips"]


def test_kernel_equals_generic_cell_on_the_paper_grid():
    """The margin-map kernel and the generic score-space cell give the same integer tables."""
    g = pt.paper_grid(10)
    axes = dict(lr=g["lr"], corr=g["corr"], p1=g["p1"])
    fast = pt.sweep("two_particles", axes, 1000, metrics=["first_full_accuracy", "full_accuracy_from"])
    slow = pt.sweep("two_particles", axes, 1000, metrics=["first_full_accuracy", "full_accuracy_from",
                                                          "loss_increases"])
    assert fast.config["engine"] == "two-particle kernel" and slow.config["engine"] == "cells"
    for k in ("first_full_accuracy", "full_accuracy_from"):
        np.testing.assert_array_equal(fast.outputs[k], slow.outputs[k])
    assert np.sum(fast.outputs["first_full_accuracy"] < 0) == 114  # 100 of them at corr = 1


def test_kernel_against_the_w_space_numpy_baseline():
    g = pt.paper_grid(4)
    P1, C, L = np.meshgrid(g["p1"], g["corr"], g["lr"], indexing="ij")
    got = np.asarray(pt.two_particle_hitting_times(C, P1, L, 300))
    np.testing.assert_array_equal(got, numpy_hitting_times(C, P1, L, 300).reshape(C.shape))
    assert np.all(got[:, -1] == -1)  # corr = 1: m2 = -m1 exactly, never both right


def test_first_step_rule():
    # One step gives m = lr (p1 - corr p2, p2 - corr p1); token 2 loses ties (argmax to class 0).
    p1, corr = 0.7, np.array([0.1, 0.3, 0.42, 0.43, 0.6])
    got = np.asarray(pt.two_particle_hitting_times(corr, p1, 0.5, 50))
    assert np.all((got == 1) == (corr < (1 - p1) / p1))


def test_hitting_time_vmapped_equals_the_kernel():
    c, q, lr = np.array([0.5, 0.8, 1.0]), np.array([0.6, 0.7, 0.75]), np.array([1.0, 0.5, 2.0])
    f = jax.vmap(lambda c, q, l: pt.hitting_time(pt.two_particles(c, q), l, 100))
    np.testing.assert_array_equal(f(c, q, lr), pt.two_particle_hitting_times(c, q, lr, 100))


def test_zipf_axis_answers_the_researchers_question():
    """First step of full accuracy against the Zipf exponent for n = 5, corr = 0.5."""
    zipf = np.linspace(0.0, 3.0, 7)
    s = pt.sweep("equicorrelated", dict(lr=[1.0], n=[5], corr=[0.5], zipf=zipf), 400, metrics=["first_full_accuracy"])
    got = s.outputs["first_full_accuracy"].ravel()
    want = [int(pt.hitting_time(pt.equicorrelated(5, 0.5, pt.zipf(5, a)), 1.0, 400)) for a in zipf]
    np.testing.assert_array_equal(got, want)
    assert got[0] >= 0 and got[-1] > got[0]  # rarer tokens take longer (or never)


def test_user_factory_with_key_and_sphere_family_agree():
    def sphere(zipf, key):
        return pt.random_sphere(key, 6, 3, 4, p=pt.frequencies(6, zipf=zipf), targets=np.arange(6) % 3)

    axes = dict(lr=[0.5, 3.0], zipf=[1.0], seed=[0, 1])
    mine = pt.sweep(sphere, axes, 50, metrics=["final_loss"])
    theirs = pt.sweep("sphere", dict(axes, n=[6], m=[3], d=[4]), 50, metrics=["final_loss"])
    np.testing.assert_array_equal(mine.outputs["final_loss"].ravel(), theirs.outputs["final_loss"].ravel())


def test_sgd_and_random_init_in_a_sweep_are_the_library_runs():
    """Batch k from fold_in(key(seed), k), as particles.sgd draws it; init from INIT_KEY."""
    problem = pt.equicorrelated(3, 0.4, pt.zipf(3, 2.0))
    s = pt.sweep("equicorrelated", dict(lr=[2.0], n=[3], corr=[0.4], zipf=[2.0], seed=[0, 7]), 40, batch_size=4,
                 metrics=["final_loss"])
    for i, seed in enumerate((0, 7)):
        traj = pt.sgd(problem, 2.0, 40, 4, seed)
        np.testing.assert_allclose(s.outputs["final_loss"].ravel()[i], traj.loss[-1], rtol=1e-13)
    s = pt.sweep("equicorrelated", dict(lr=[1.0], seed=[3]), 10, init_std=0.5, metrics=["final_loss"])
    S0 = 0.5 * jax.random.normal(jax.random.fold_in(jax.random.key(3), INIT_KEY), (2, 2))
    problem = pt.equicorrelated(2, 0.0)
    problem = type(problem)(**{**{k: getattr(problem, k) for k in ("p", "Y", "G_E", "G_U", "E", "U", "W0")},
                               "S0": S0, "structure_E": problem.structure_E, "structure_U": problem.structure_U})
    np.testing.assert_allclose(s.outputs["final_loss"].item(), pt.gd(problem, 1.0, 10).loss[-1], rtol=1e-13)


def test_chunks_and_devices_do_not_change_results_and_a_repeat_does_not_recompile():
    # On CPU the conftest gives two host devices, so chunks are sharded; a GPU has its own count.
    axes = dict(lr=[0.5, 2.0, 8.0], corr=[0.1, 0.6, 0.9], n=[3])
    whole = pt.sweep("equicorrelated", axes, 40)
    pt.sweep("equicorrelated", axes, 40, chunk_size=4)  # compiles the chunk shape
    with compilations() as compiled:  # new values, same shapes: nothing compiles
        chunked = pt.sweep("equicorrelated", {**axes, "lr": [0.6, 2.0, 8.0]}, 40, chunk_size=4)
        pt.sweep("two_particles", {"lr": [0.1, 0.2], "corr": [0.3]}, 40, metrics=["first_full_accuracy"])
        pt.sweep("two_particles", {"lr": [0.3, 0.4], "corr": [0.5]}, 40, metrics=["first_full_accuracy"])
    assert chunked.chunks_total == 3  # 9 cells in chunks of 4, the last padded
    for k in whole.outputs:
        np.testing.assert_array_equal(whole.outputs[k][1:], chunked.outputs[k][1:])
    assert [c for c in compiled if "_run_cells" in c] == []
    assert len([c for c in compiled if "_kernel" in c]) <= 1  # the kernel's first compile only


def test_non_finite_cells_are_marked_and_the_sweep_continues():
    # Initial scores 1e308 * N(0, 1) overflow to inf where |z| > 1.8: those cells are bad
    # from step 0, the others carry on (a step moves scores by at most 2 lr).
    seeds = np.arange(12)
    z = np.stack([np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(int(s)), INIT_KEY), (2, 2)))
                  for s in seeds])
    expected = np.any(np.abs(z) > np.finfo(np.float64).max / 1e308, axis=(1, 2))
    assert expected.any() and not expected.all()
    out = pt.sweep("equicorrelated", {"lr": [1.0], "seed": seeds}, 5, init_std=1e308).outputs
    bad = out["status"].ravel() != pt.Status.OK
    np.testing.assert_array_equal(bad, expected)
    assert np.all(out["first_bad_step"].ravel()[bad] == 0) and np.all(out["first_bad_step"].ravel()[~bad] == -1)
    assert np.all(np.isnan(out["final_loss"].ravel()[bad])) and np.all(np.isfinite(out["final_loss"].ravel()[~bad]))


def test_resume_after_an_interrupt_equals_the_uninterrupted_sweep(tmp_path, monkeypatch):
    axes = {"lr": [1.0, 10.0, 30.0], "corr": [0.5, 0.95], "n": [2, 3]}
    whole = pt.sweep("equicorrelated", axes, 30, chunk_size=2)
    ck = str(tmp_path / "partial.npz")
    monkeypatch.setenv("PARTICLES_STOP_AFTER_CHUNKS", "2")  # the test hook: Ctrl-C after 2 chunks
    with pytest.raises(KeyboardInterrupt):
        pt.sweep("equicorrelated", axes, 30, chunk_size=2, checkpoint=ck)
    monkeypatch.delenv("PARTICLES_STOP_AFTER_CHUNKS")
    partial = pt.load(ck)
    assert partial.chunks_computed == 2
    # The cells of the chunks not run yet hold -2 (integer metrics) and NaN (the others).
    late = partial.outputs["first_full_accuracy"].reshape(-1)[8:]
    assert late.size and np.all(late == -2) and np.all(np.isnan(partial.outputs["final_loss"].reshape(-1)[8:]))
    with pytest.raises(ValueError, match="resume"):
        pt.sweep("equicorrelated", axes, 30, chunk_size=2, checkpoint=ck)
    with pytest.raises(ValueError, match="different sweep"):
        pt.sweep("equicorrelated", axes, 31, chunk_size=2, checkpoint=ck, resume=True)
    # The same axes in another order are other cells in another order; another chunk size
    # cuts the grid elsewhere: both would mix the finished cells with the wrong ones.
    with pytest.raises(ValueError, match="different sweep"):
        pt.sweep("equicorrelated", dict(reversed(list(axes.items()))), 30, chunk_size=2, checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="other chunks"):
        pt.sweep("equicorrelated", axes, 30, chunk_size=4, checkpoint=ck, resume=True)
    resumed = pt.sweep("equicorrelated", axes, 30, chunk_size=2, checkpoint=ck, resume=True)
    assert resumed.chunks_computed == resumed.chunks_total - 2
    for k in whole.outputs:
        np.testing.assert_array_equal(whole.outputs[k], resumed.outputs[k])


def test_save_and_load_round_trip(tmp_path):
    s = pt.sweep("two_particles", {"lr": [1.0, 2.0], "corr": [0.5]}, 20)
    s.save(tmp_path / "s.npz")
    back = pt.load(tmp_path / "s.npz")
    assert isinstance(back, pt.Sweep) and back.config == s.config and list(back.axes) == list(s.axes)
    for k in s.outputs:
        np.testing.assert_array_equal(back.outputs[k], s.outputs[k])


def test_expand_grid_is_c_order_product():
    axes = {"lr": [0.1, 1.0, 10.0], "corr": [0.2, 0.5]}
    flat = pt.expand_grid(axes)
    assert list(zip(flat["lr"], flat["corr"])) == list(itertools.product(axes["lr"], axes["corr"]))


def test_frequency_laws():
    np.testing.assert_allclose(pt.frequencies(3, log_odds=np.log(4.0)), [4 / 6, 1 / 6, 1 / 6], atol=1e-15)
    np.testing.assert_allclose(pt.frequencies(2, p1=0.7), [0.7, 0.3], atol=1e-15)
    w = np.arange(1, 5) ** -1.5
    np.testing.assert_allclose(pt.frequencies(4, zipf=1.5), w / w.sum(), rtol=1e-15)
    np.testing.assert_allclose(pt.frequencies(2), [2 / 3, 1 / 3], atol=1e-15)
    with pytest.raises(ValueError, match="p1 and zipf"):
        pt.frequencies(3, p1=0.5, zipf=1.0)


@pytest.mark.parametrize(
    "family,axes,match",
    [
        ("equicorrelated", {"corr": [0.5]}, "no 'lr'"),
        ("equicorrelated", {"lr": [-1.0]}, "lr="),
        ("equicorrelated", {"lr": [1.0], "p1": [0.5], "log_odds": [1.0]}, "same frequencies"),
        ("equicorrelated", {"lr": [1.0], "bogus": [1.0]}, "bogus"),
        ("equicorrelated", {"lr": [1.0], "corr": [-0.9], "n": [3]}, "corr="),
        ("equicorrelated", {"lr": [1.0], "n": [1]}, "n="),
        ("two_particles", {"lr": [1.0], "d": [3]}, "'d'"),
        ("nope", {"lr": [1.0]}, "problem="),
    ],
)
def test_bad_axes(family, axes, match):
    with pytest.raises(ValueError, match=match):
        pt.sweep(family, axes, 10)


# ------------------------------------------------------------ engines, chunks, checks
def _gd_final_margins(problem, lr, steps):
    """GD in score space written in numpy (no JAX): the final margins."""
    G_E, G_U, p, Y = (np.asarray(a) for a in (problem.G_E, problem.G_U, problem.p, problem.Y))
    S = np.asarray(problem.S0, np.float64)
    for _ in range(steps):
        Z = np.exp(S - S.max(1, keepdims=True))
        S = S - lr * G_E @ (p[:, None] * (Z / Z.sum(1, keepdims=True) - Y)) @ G_U
    f = Y.argmax(1)
    return S[np.arange(len(f)), f] - np.where(np.eye(Y.shape[1], dtype=bool)[f], -np.inf, S).max(1)


def test_the_engine_is_the_kernel_only_where_it_applies():
    base = {"lr": [1.0], "corr": [0.5]}
    kernel = ["first_full_accuracy", "final_loss"]
    assert pt.sweep("two_particles", base, 5, metrics=kernel).config["engine"] == "two-particle kernel"
    assert pt.sweep("equicorrelated", dict(base, n=[2]), 5, metrics=kernel).config["engine"] == "two-particle kernel"
    for kwargs, axes in ((dict(), dict(base, n=[3])), (dict(batch_size=2), base), (dict(init_std=0.1), base),
                         (dict(metrics=kernel + ["sign_flips"]), base), (dict(), dict(base, seed=[0]))):
        s = pt.sweep("equicorrelated" if "n" in axes else "two_particles", axes, 5, **{"metrics": kernel, **kwargs})
        assert s.config["engine"] == "cells", (kwargs, axes)
    # both engines give the same numbers for every frequency law (margins after 40 steps: numpy)
    for law in ({"p1": [0.7]}, {"log_odds": [1.2]}, {"zipf": [2.0]}):
        axes = {"lr": [2.0], "corr": [0.6], **law}
        k = pt.sweep("two_particles", axes, 40, metrics=["final_min_margin", "first_full_accuracy"])
        c = pt.sweep("two_particles", axes, 40, metrics=["final_min_margin", "first_full_accuracy", "sign_flips"])
        assert k.config["engine"] == "two-particle kernel" and c.config["engine"] == "cells"
        (name, (value,)), = law.items()
        p = np.asarray(pt.frequencies(2, **{name: value}))
        want = _gd_final_margins(pt.two_particles(0.6, float(p[0])), 2.0, 40).min()
        # two implementations of 40 steps of the same map (margins ~5): round-off
        np.testing.assert_allclose([k.outputs["final_min_margin"].item(), c.outputs["final_min_margin"].item()],
                                   want, rtol=0, atol=1e-12)
        assert k.outputs["first_full_accuracy"].item() == c.outputs["first_full_accuracy"].item()
    default = pt.sweep("two_particles", {"lr": [2.0], "corr": [0.6]}, 40, metrics=["final_min_margin"])
    np.testing.assert_allclose(default.outputs["final_min_margin"].item(),  # no law: Zipf(1), p1 = 2/3
                               _gd_final_margins(pt.two_particles(0.6, 2 / 3), 2.0, 40).min(), atol=1e-12)


def test_default_chunks_follow_the_memory_budget(monkeypatch):
    from particles import _sweep

    ndev = len(jax.devices())  # chunks are rounded up to a multiple of the devices
    axes = {"lr": [0.5, 1.0, 2.0], "corr": [0.1, 0.5, 0.9], "n": [2, 8]}
    whole = pt.sweep("equicorrelated", axes, 10)
    assert whole.chunks_total == 2  # one chunk per shape (n = 2, n = 8) under the default budget
    # A budget between 3 and 4 cells of n = 2 and below one cell of n = 8 (a cell's budget
    # grows like n², the Grams and scores, above a fixed part).
    two, eight = _sweep.cell_bytes({"n": 2}), _sweep.cell_bytes({"n": 8})
    assert eight > 3.5 * two
    monkeypatch.setattr(_sweep, "MEMORY_BUDGET", 3.5 * two)
    small = pt.sweep("equicorrelated", axes, 10)
    assert small.chunks_total == math.ceil(9 / (ndev * math.ceil(3 / ndev))) + math.ceil(9 / ndev)
    monkeypatch.setattr(_sweep, "MEMORY_BUDGET", 1.0)  # never below one cell (then the devices' worth)
    tiny = pt.sweep("equicorrelated", axes, 10)
    assert tiny.chunks_total == 2 * math.ceil(9 / ndev)
    for s in (small, tiny):
        for k in whole.outputs:
            np.testing.assert_array_equal(s.outputs[k], whole.outputs[k])
    # More outputs cost more: M = 64 outputs for n = 2 inputs is budgeted far above M = 2.
    assert _sweep.cell_bytes({"n": 2, "m": 64}) > 5 * _sweep.cell_bytes({"n": 2, "m": 2})


def test_sweep_arguments_and_axes_are_checked():
    ok = {"lr": [1.0]}
    cases = [
        (dict(metrics=["nope"]), "metrics"), (dict(metrics=[]), "metrics"), (dict(batch_size=0), "batch_size"),
        (dict(init_std=-1.0), "init_std"), (dict(init_std=float("nan")), "init_std"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            pt.sweep("two_particles", ok, 5, **kwargs)
    with pytest.raises(ValueError, match="steps"):
        pt.sweep("two_particles", ok, 0)
    axes_cases = [
        ({"lr": [1.0], "seed": [0.5]}, "seed="), ({"lr": [1.0], "seed": [-1]}, "seed="),
        ({"lr": []}, "at least one finite value"), ({"lr": [1.0, np.inf]}, "at least one finite value"),
        ({"lr": [0.0]}, "lr="), ({"lr": [1.0], "p1": [1.0]}, "p1="), ({"lr": [1.0], "p1": [0.0]}, "p1="),
        ({"lr": [1.0], "corr": [1.5]}, "corr="), ({"lr": [1.0], "corr": [-1.5]}, "corr="),
    ]
    for axes, match in axes_cases:
        with pytest.raises(ValueError, match=match):
            pt.sweep("two_particles", axes, 5)
    for axes, match in (({"lr": [1.0], "n": [2.5]}, "n="), ({"lr": [1.0], "n": [0]}, "n="),
                        ({"lr": [1.0], "n": [4], "corr": [-0.34]}, r"corr=.*\[-0.333333, 1\]")):
        with pytest.raises(ValueError, match=match):
            pt.sweep("equicorrelated", axes, 5)
    # the bounds themselves are allowed: corr = -1/(n-1) for n = 3, corr = 1, a seed of 0
    s = pt.sweep("equicorrelated", {"lr": [1.0], "n": [3], "corr": [-0.5, 1.0], "seed": [0]}, 3,
                 metrics=["final_loss"])
    assert s.shape == (1, 1, 2, 1) and np.all(np.isfinite(s.outputs["final_loss"]))
    with pytest.raises(ValueError, match="not a particles.Problem"):
        pt.sweep(lambda corr: 1.0, {"lr": [1.0], "corr": [0.5]}, 3)
    with pytest.raises(ValueError, match="problem="):
        pt.sweep(3, {"lr": [1.0]}, 3)


def test_sweep_result_properties_and_a_custom_family_name():
    s = pt.sweep("equicorrelated", {"lr": [1.0], "seed": [0, 1]}, 3, init_std=1e308)
    # the cell whose initial scores overflow is counted; its status says so
    assert s.n_bad == int(np.sum(s.outputs["status"] != pt.Status.OK)) and s.shape == (1, 2)
    assert pt.sweep("two_particles", {"lr": [1.0]}, 3, metrics=["final_loss"]).n_bad == 0  # no status recorded

    def my_family(corr):
        return pt.two_particles(corr, 0.75)

    f = pt.sweep(my_family, {"lr": [1.0], "corr": [0.5]}, 30, metrics=["final_min_margin"])
    assert f.config["family"] == "my_family" and f.config["engine"] == "cells"
    np.testing.assert_allclose(f.outputs["final_min_margin"].item(),
                               _gd_final_margins(pt.two_particles(0.5, 0.75), 1.0, 30).min(), atol=1e-12)


def test_sphere_family_defaults():
    from particles import _families

    fam = pt.FAMILIES["sphere"]
    assert _families.shapes_of(fam, {}) == {"n": 8, "m": 8, "d": 8}  # m and d default to n
    assert _families.shapes_of(fam, {"n": 5.0}) == {"n": 5, "m": 5, "d": 5}
    assert _families.shapes_of(fam, {"n": 5, "d": 2}) == {"n": 5, "m": 5, "d": 2}
    assert _families.shapes_of(pt.FAMILIES["two_particles"], {"n": 3}) == {}


def test_the_keys_of_a_cell_are_the_documented_ones():
    """Random embeddings from fold_in(key(seed), 2³² − 2), initial scores from fold_in(key(seed),
    2³² − 1) (particles._cell's docstring): a sweep cell is the library run on those."""
    seed = 5
    key = jax.random.key(seed)
    problem = pt.random_sphere(jax.random.fold_in(key, 2**32 - 2), 6, 3, 4, p=pt.frequencies(6, zipf=1.0),
                               targets=np.arange(6) % 3)
    s = pt.sweep("sphere", {"lr": [1.5], "seed": [seed], "n": [6], "m": [3], "d": [4], "zipf": [1.0]}, 20,
                 metrics=["final_min_margin"])
    # two implementations of 20 steps of the same map (margins ~2): round-off
    np.testing.assert_allclose(s.outputs["final_min_margin"].item(), _gd_final_margins(problem, 1.5, 20).min(),
                               atol=1e-12)
    S0 = 0.25 * np.asarray(jax.random.normal(jax.random.fold_in(key, 2**32 - 1), (2, 2)))
    init = pt.sweep("two_particles", {"lr": [1.0], "corr": [0.5], "p1": [0.75], "seed": [seed]}, 15, init_std=0.25,
                    metrics=["final_min_margin"])
    start = pt.Problem.from_grams(np.asarray(pt.two_particles(0.5, 0.75).G_E), np.eye(2), [0.75, 0.25], [0, 1], S0=S0)
    np.testing.assert_allclose(init.outputs["final_min_margin"].item(), _gd_final_margins(start, 1.0, 15).min(),
                               atol=1e-12)


def test_a_user_family_may_have_a_value_axis_named_n():
    """n is a shape axis of the named families only; a user function's n is a value, and n = 1
    does not break the correlation check (corr in [-1, 1] then)."""
    def f(n, corr):
        return pt.two_particles(corr, 0.75)

    s = pt.sweep(f, {"lr": [1.0], "n": [1.0], "corr": [-1.0, 0.5]}, 5, metrics=["final_loss"])
    assert s.shape == (1, 1, 2) and np.all(np.isfinite(s.outputs["final_loss"]))


def test_shape_axes_of_one_are_allowed():
    """d = 1 (one-dimensional embeddings) and m = 1 (one class) are shapes like any other."""
    s = pt.sweep("sphere", {"lr": [1.0], "n": [3], "m": [1, 2], "d": [1], "seed": [0]}, 5,
                 metrics=["final_loss", "status"])
    assert s.shape == (1, 1, 2, 1, 1) and np.all(s.outputs["status"] == pt.Status.OK)
    assert s.outputs["final_loss"].ravel()[0] == 0.0  # one class: nothing to learn, the loss is 0


def test_padding_keeps_one_compiled_chunk_shape():
    """13 cells in chunks of 6: the last chunk (1 cell) is padded to 6, so one program compiles."""
    from helpers import compilations

    axes = {"lr": np.linspace(0.1, 1.3, 13), "corr": [0.37]}
    with compilations() as compiled:
        s = pt.sweep("equicorrelated", axes, 7, chunk_size=6, metrics=["final_loss", "loss_increases"])
    assert s.chunks_total == 3 and np.all(np.isfinite(s.outputs["final_loss"]))
    assert len([c for c in compiled if "_run_cells" in c]) == 1, compiled


def test_the_kernel_tie_rule():
    """Argmax ties go to class 0 = f*(token 1): token 1 is right at m1 = 0, token 2 is not at m2 = 0;
    a token with p = 0 does not count (the convention of particles.events)."""
    from particles import _grid

    full = lambda m1, m2, p1: bool(_grid._full(jnp.asarray(m1), jnp.asarray(m2), p1, 1 - p1))  # noqa: E731
    assert full(0.0, 1.0, 0.5) and not full(1.0, 0.0, 0.5) and not full(-1e-300, 1.0, 0.5)
    assert full(-1.0, 1.0, 0.0) and full(1.0, -1.0, 1.0)


def test_inputs_that_never_occur_do_not_set_the_least_margin():
    """p = (0.7, 0.3, 0): the third input never occurs, its margin falls (nothing pulls it
    up), and the sweep's final_min_margin is the least margin of the other two, as gd has it."""
    def factory(corr):
        return pt.equicorrelated(3, corr, p=jnp.array([0.7, 0.3, 0.0]))

    s = pt.sweep(factory, {"lr": [1.0], "corr": [0.5]}, 20, metrics=["final_min_margin"])
    m = np.asarray(pt.gd(factory(0.5), 1.0, 20).margins[-1])
    assert m[2] < min(m[:2])  # the unseen input would otherwise be the least
    assert s.outputs["final_min_margin"].item() == min(m[:2])


def test_a_sweep_result_is_immutable_and_options_are_keywords(tmp_path, capfd, monkeypatch):
    import dataclasses

    from particles._sweep import KERNEL_METRICS

    monkeypatch.delenv("PARTICLES_QUIET", raising=False)
    axes = {"lr": [1.0], "corr": [0.5]}
    s = pt.sweep("two_particles", axes, 5, metrics=list(KERNEL_METRICS))
    assert s.config["engine"] == "two-particle kernel"  # every metric the kernel computes: still the kernel
    pt.sweep("equicorrelated", dict(axes, n=[3]), 5, metrics=["final_loss"])  # the cells engine, chunked
    assert capfd.readouterr().err == ""  # no progress bar unless asked
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.config = {}
    with pytest.raises(TypeError):
        pt.sweep("two_particles", axes, 5, ["final_loss"])  # metrics= by name only
    with pytest.raises(TypeError):
        s.save(str(tmp_path / "s.npz"), {"note": 1})  # extra= by name only


def test_the_kernel_with_a_token_that_never_occurs_and_its_loss():
    """p1 = 1 (token 2 never occurs): both tokens count as right from step 0, for good; the
    least margin and the loss are token 1's alone. p1 = 0.3: the final loss is
    p1 log(1 + e^{−m1}) + p2 log(1 + e^{−m2}) of numpy's margins after 25 steps."""
    from particles._grid import paper_grid, two_particle_events

    out = two_particle_events(0.6, 1.0, 2.0, 25)
    assert int(out["first_full_accuracy"]) == 0 and int(out["full_accuracy_from"]) == 0
    m = _gd_final_margins(pt.two_particles(0.6, 1.0), 2.0, 25)
    assert abs(float(out["final_min_margin"]) - m[0]) <= 1e-12  # 25 steps of O(1) numbers: round-off
    for p1 in (0.3, 0.0):
        out = two_particle_events(0.6, p1, 2.0, 25)
        m = _gd_final_margins(pt.two_particles(0.6, p1), 2.0, 25)
        loss = p1 * np.log1p(np.exp(-m[0])) + (1 - p1) * np.log1p(np.exp(-m[1]))
        assert abs(float(out["final_loss"]) - loss) <= 1e-12
        assert abs(float(out["final_min_margin"]) - (m[1] if p1 == 0 else m.min())) <= 1e-12
    x = np.logspace(-0.5, 0.5, 10)
    np.testing.assert_allclose(paper_grid()["p1"], np.exp(x) / (1 + np.exp(x)), rtol=1e-15)
    with pytest.raises(TypeError):
        pt.two_particle_hitting_times(0.5, 0.75, 1.0, 10, None)  # dtype= by name only


def test_a_cell_s_memory_counts_both_embeddings():
    """cell_bytes: 8 bytes × (16 N max(N, M) + (N + M) d + 256): the d-dependent part is the
    embeddings E (N × d) and U (M × d), 8 (N + M) bytes per unit of d."""
    from particles import _sweep

    a = _sweep.cell_bytes({"n": 3, "m": 7, "d": 10})
    b = _sweep.cell_bytes({"n": 3, "m": 7, "d": 110})
    assert b - a == 8 * (3 + 7) * 100


def test_the_cell_and_the_kernel_take_keyword_arguments():
    """The sweep's two engines, called by name as a user of `particles._cell` / `_grid` would:
    the same events as the positional call (and as each other, on the two-particle map)."""
    from particles import _grid

    P = pt.two_particles(0.5, 0.75)
    key = jax.random.key(0)  # GD: the key draws nothing
    a = run_cell(problem=P, lr=jnp.asarray(2.0), steps=30, key=key, tol=None)
    b = run_cell(P, jnp.asarray(2.0), 30, key)
    k = _grid.two_particle_events(corr=0.5, p1=0.75, lr=2.0, steps=30, dtype=jnp.float64)
    assert int(a["first_full_accuracy"]) == int(b["first_full_accuracy"]) == int(k["first_full_accuracy"])
    assert float(a["final_loss"]) == float(b["final_loss"])
    assert abs(float(k["final_loss"]) - float(a["final_loss"])) <= 1e-14  # two maps, 30 steps: round-off
    # in float32 when asked: the loss to float32 round-off (30 steps, ~1e-5), the same first step
    k32 = _grid.two_particle_events(corr=0.5, p1=0.75, lr=2.0, steps=30, dtype=jnp.float32)
    assert k32["final_loss"].dtype == jnp.float32 and int(k32["first_full_accuracy"]) == int(k["first_full_accuracy"])
    assert abs(float(k32["final_loss"]) / float(k["final_loss"]) - 1) <= 1e-5
