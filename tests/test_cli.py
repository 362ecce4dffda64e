"""End-to-end tests of the lab's scripts (subprocesses, small settings), and of _cli's parsers.

Each subprocess costs ~2 s of start-up, so checks are combined: one successful simulate run
checks files, JSON and npz together; usage errors run before JAX is imported.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
sys.path.insert(0, SCRIPTS)

import _cli  # noqa: E402


def run(script, *args, env=None, cwd=None):
    e = dict(os.environ, PARTICLES_QUIET="1", MPLBACKEND="Agg")
    e.update(env or {})
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, script), *map(str, args)], capture_output=True,
                          text=True, env=e, cwd=cwd or ROOT, timeout=300)


def one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr  # no traceback, no usage dump
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


# ------------------------------------------------------------------ _cli
def test_parse_floats_lists_and_spaces():
    assert _cli.parse_floats("--lr", "0.1,1,10") == [0.1, 1.0, 10.0]
    np.testing.assert_allclose(_cli.parse_floats("--corr", "linspace:0.5:1:3"), [0.5, 0.75, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(_cli.parse_floats("--lr", "logspace:-1:1:3"), [0.1, 1.0, 10.0], rtol=1e-15)
    assert _cli.parse_ints("--n", "2,3") == [2, 3]
    for bad in ("", "a,b", "linspace:1:2", "logspace:0:1:0", "nan"):
        with pytest.raises(_cli.UsageError, match="--lr"):
            _cli.parse_floats("--lr", bad)
    with pytest.raises(_cli.UsageError, match="> 0"):
        _cli.parse_floats("--lr", "1,-1", positive=True)
    with pytest.raises(_cli.UsageError, match="integers"):
        _cli.parse_ints("--n", "2.5")


def test_atomic_writers(tmp_path):
    path = tmp_path / "x.json"
    _cli.write_json(path, {"a": np.arange(3), "b": float("nan"), "c": np.float64(2.5)})
    assert json.loads(path.read_text()) == {"a": [0, 1, 2], "b": "nan", "c": 2.5}
    _cli.write_npz(tmp_path / "x.npz", {"a": np.ones(2)})
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure()
    with pytest.raises(_cli.NumericalError, match="NaN"):
        _cli.save_figure(fig, str(tmp_path / "f.png"), check=[np.array([1.0, np.nan])])
    assert not (tmp_path / "f.png").exists()


# ------------------------------------------------------------- simulate
def test_simulate_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = run("simulate.py", "--n", 2, "--corr", 0.3, "--steps", 60, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # --json: the summary alone on stdout
    assert sorted(os.listdir(out)) == ["figure.png", "summary.json", "trajectory.npz"]
    assert json.loads((out / "summary.json").read_text())["results"] == summary["results"]
    for key in ("config", "seed", "system", "lr", "lr_reason", "results", "comparison", "versions", "wall_time_s"):
        assert key in summary
    assert summary["versions"]["jax"] and summary["config"]["corr"] == 0.3
    # Default rates: 0.5 and 4 times 2 / sharpness at S0 = 0, which for two particles is
    # (1 + sqrt((p1 - p2)^2 + 4 corr^2 p1 p2)) / 4 (paper §3.3), with p = (2/3, 1/3).
    p1, p2, a = 2 / 3, 1 / 3, 0.3
    lam = (1 + np.sqrt((p1 - p2) ** 2 + 4 * a * a * p1 * p2)) / 4
    np.testing.assert_allclose(summary["lr"], [0.5 * 2 / lam, 4 * 2 / lam], rtol=5e-3)
    assert summary["system"]["regime"].startswith("separable")
    data = np.load(out / "trajectory.npz")
    runs = list(data["runs"])
    assert runs == list(summary["results"]) == ["gd_lr0", "gd_lr1", "flow"]
    for name in runs:
        res = summary["results"][name]
        assert data[f"{name}__loss"][-1] == pytest.approx(res["final_loss"], rel=1e-12)
        np.testing.assert_allclose(data[f"{name}__margins"][-1], res["final_margins"], rtol=1e-12)
    assert data["gd_lr0__loss"].shape == (61,)
    np.testing.assert_allclose(data["lr"], summary["lr"])
    # Stability ratio = lr * sharpness / 2 at the start.
    assert summary["results"]["gd_lr1"]["stability_ratio_start"] == pytest.approx(4.0, rel=5e-3)


def test_simulate_usage_errors_exit_2():
    one_line_error(run("simulate.py", "--corr", 2), "--corr", "2")
    one_line_error(run("simulate.py", "--steps", "abc"), "--steps")  # argparse's own error
    one_line_error(run("simulate.py", "--n", 3, "--p", "0.5,0.5"), "--p", "3 frequencies")
    one_line_error(run("simulate.py", "--lr", "1,-2"), "--lr", "> 0")


def test_simulate_numerical_failure_exits_3(tmp_path):
    # Sign descent with an absurd rate sends W to ±1e308; the scores overflow at step 1.
    proc = run("simulate.py", "--optimizer", "sign", "--lr", "1e308", "--steps", 3, "--no-flow", "--out",
               tmp_path / "bad", "--quiet")
    assert proc.returncode == 3, proc.stderr
    assert "step 1" in proc.stderr and "non-finite" in proc.stderr
    assert not (tmp_path / "bad" / "figure.png").exists()  # never a figure of non-finite data
    summary = json.loads((tmp_path / "bad" / "summary.json").read_text())
    assert "failure" in summary["results"]["sign_lr0"]


# ---------------------------------------------------------------- sweep
def test_sweep_interrupt_resume_and_outputs(tmp_path):
    out = tmp_path / "sw"
    args = ["--lr", "logspace:-1:1:3", "--corr", "0.5,0.9", "--log-odds", "linspace:0.5:1.5:2", "--steps", 40,
            "--chunk-size", 4, "--out", out]
    first = run("sweep.py", *args, "--quiet", env={"PARTICLES_SWEEP_STOP_AFTER": "1"})
    assert first.returncode == 130 and "--resume" in first.stderr, first.stderr
    assert not (out / "sweep.npz").exists()
    assert len(os.listdir(out / "chunks")) == 1
    second = run("sweep.py", *args, "--resume", "--json")
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["chunks"] == {"computed": 2, "total": 3, "resumed": True}
    data = np.load(out / "sweep.npz")
    assert list(data["axis_names"]) == ["lr", "corr", "log_odds", "n", "seed"]
    assert summary["shape"] == [3, 2, 2, 1, 1]
    from particles._sweep import sweep_gd

    axes = {k: data[f"axis_{k}"] for k in data["axis_names"]}
    fresh = sweep_gd(axes, 40, chunk_size=4)  # the same sweep, uninterrupted
    for m in summary["metrics"]:
        np.testing.assert_array_equal(data[m], fresh.outputs[m])
        np.testing.assert_array_equal(np.asarray(summary["outputs"][m], dtype=float), data[m].astype(float))
    figures = sorted(f for f in os.listdir(out) if f.endswith(".png"))
    assert figures == ["phase-corr-log_odds.png", "phase-corr-lr.png", "phase-log_odds-lr.png"]


def test_sweep_usage_errors_exit_2(tmp_path):
    one_line_error(run("sweep.py", "--lr", "linspace:1:2"), "--lr", "linspace:a:b:k")
    one_line_error(run("sweep.py", "--p1", "0.5", "--log-odds", "1"), "--log-odds")
    one_line_error(run("sweep.py", "--resume", "--out", tmp_path / "nothing"), "--resume")


# ------------------------------------------------------------ reproduce
def test_reproduce_one_figure(tmp_path):
    out = tmp_path / "figs"
    proc = run("reproduce.py", "--figure", "landscapes", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {"landscapes.png", "landscapes.pdf", "REPORT.md", "report.json"} <= set(os.listdir(out))
    text = (out / "REPORT.md").read_text()
    assert "## 1. Landscapes" in text and "random_sphere" in text
    # The measured wedge of perfect accuracy matches arccos(α) (paper §3.3) to the circle grid.
    wedge = json.loads((out / "report.json").read_text())["landscapes"]["numbers"]["wedge"]
    for a, theory_deg, measured_deg in wedge:
        assert theory_deg == pytest.approx(np.degrees(np.arccos(a)), abs=1e-9)
        assert measured_deg == pytest.approx(theory_deg, abs=0.01)
    one_line_error(run("reproduce.py", "--figure", "nope"), "--figure", "nope")
