"""End-to-end tests of the command-line tools (subprocesses, small settings) and their shared parts.

Each subprocess costs a few seconds of start-up, so checks are combined: one successful
simulate run checks files, JSON and the saved runs together. Every failure a user can cause
ends with exit 2 (input) or 3 (numerical), one line naming the cause, no traceback and no
partial file.
"""

import errno
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import particles as pt
from particles.cli import _common as c

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")


def run(script, *args, env=None, cwd=None, **kw):
    e = dict(os.environ, PARTICLES_QUIET="1", MPLBACKEND="Agg")
    e.update(env or {})
    return subprocess.run([sys.executable, os.path.join(SCRIPTS, script), *map(str, args)], capture_output=True,
                          text=True, env=e, cwd=cwd or ROOT, timeout=600, **kw)


def one_line_error(proc, *words, code=2):
    assert proc.returncode == code, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr  # no traceback, no usage dump
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def no_temporary_files(folder):
    return [p for p in os.listdir(folder) if p.startswith(".tmp")] == [] if os.path.isdir(folder) else True


# ------------------------------------------------------------ shared parts
def test_parse_floats_lists_and_spaces():
    assert c.parse_floats("--lr", "0.1,1,10") == [0.1, 1.0, 10.0]
    np.testing.assert_allclose(c.parse_floats("--corr", "linspace:0.5:1:3"), [0.5, 0.75, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(c.parse_floats("--lr", "logspace:-1:1:3"), [0.1, 1.0, 10.0], rtol=1e-15)
    assert c.parse_ints("--n", "2,3") == [2, 3]
    for bad in ("", "a,b", "linspace:1:2", "logspace:0:1:0", "nan"):
        with pytest.raises(c.UsageError, match="--lr"):
            c.parse_floats("--lr", bad)
    with pytest.raises(c.UsageError, match="> 0"):
        c.parse_floats("--lr", "1,-1", positive=True)
    with pytest.raises(c.UsageError, match="integers"):
        c.parse_ints("--n", "2.5")


def test_figures_of_non_finite_data_are_refused(tmp_path):
    from matplotlib.figure import Figure

    with pytest.raises(c.NumericalError, match="NaN"):
        c.save_figure(Figure(), str(tmp_path / "f.png"), check=[np.array([1.0, np.nan])])
    assert not (tmp_path / "f.png").exists()


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """ENOSPC while writing a result: exit 2, one line, no partial or temporary file."""
    from particles.cli import simulate

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code = c.run_main(simulate.main, ["--steps", "5", "--no-flow", "--no-plot", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "disk is full" in err[0]
    assert os.listdir(tmp_path / "o") == []


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
    assert summary["system"]["regime"].startswith("two particles")
    runs = pt.load(out / "trajectory.npz")  # the saved runs, read back as the library's types
    assert list(runs) == list(summary["results"]) == ["gd_lr0", "gd_lr1", "flow"]
    for name, traj in runs.items():
        assert float(traj.loss[-1]) == pytest.approx(summary["results"][name]["final_loss"], rel=1e-12)
        np.testing.assert_allclose(traj.margins[-1], summary["results"][name]["final_margins"], rtol=1e-12)
    assert runs["gd_lr0"].loss.shape == (61,) and runs["gd_lr0"].metadata["lr"] == summary["lr"][0]
    assert pt.load_problem(out / "trajectory.npz").N == 2
    # Stability ratio = lr * sharpness / 2 at the start.
    assert summary["results"]["gd_lr1"]["stability_ratio_start"] == pytest.approx(4.0, rel=5e-3)


def test_simulate_usage_errors_exit_2(tmp_path):
    one_line_error(run("simulate.py", "--corr", 2), "--corr", "2")
    one_line_error(run("simulate.py", "--steps", "abc"), "--steps")  # argparse's own error
    one_line_error(run("simulate.py", "--n", 3, "--p", "0.5,0.5"), "--p", "3 frequencies")
    one_line_error(run("simulate.py", "--lr", "1,-2"), "--lr", "> 0")
    # A system that cannot fit in memory is refused before anything is allocated.
    one_line_error(run("simulate.py", "--n", 300000, "--out", tmp_path / "big"), "GiB", "gd_vocab")
    # Output folders that cannot be created or written.
    (tmp_path / "file").write_text("x")
    one_line_error(run("simulate.py", "--out", tmp_path / "file" / "sub"), "--out")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        one_line_error(run("simulate.py", "--out", locked / "run"), "--out")


def test_simulate_numerical_failure_exits_3(tmp_path):
    # Sign descent with an absurd rate sends W to ±1e308; the scores overflow at step 1.
    proc = run("simulate.py", "--optimizer", "sign", "--lr", "1e308", "--steps", 3, "--no-flow", "--out",
               tmp_path / "bad", "--quiet")
    one_line_error(proc, "step 1", "non-finite", code=3)
    assert not (tmp_path / "bad" / "figure.png").exists()  # never a figure of non-finite data
    summary = json.loads((tmp_path / "bad" / "summary.json").read_text())
    assert "failure" in summary["results"]["sign_lr0"]


def test_an_interrupt_is_one_line_and_exit_130(tmp_path):
    # A test run started in the background inherits SIGINT ignored: the child restores Python's
    # handler before running the script (a preexec_fn would fork the multithreaded test process).
    start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", start, os.path.join(SCRIPTS, "simulate.py"), "--n", "64",
                             "--steps", "200000", "--out", str(tmp_path / "i")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PARTICLES_QUIET="1", PYTHONUNBUFFERED="1"), cwd=ROOT)
    # Interrupt once the command is at work (its first line is printed), however long the
    # imports took on a loaded machine, and before the runs' single compiled call, which holds
    # a signal until it returns.
    while not proc.stdout.readline().startswith("system"):
        assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["simulate.py: interrupted"]
    assert no_temporary_files(tmp_path / "i") and not (tmp_path / "i" / "summary.json").exists()


def test_simulate_animation(tmp_path):
    proc = run("simulate.py", "--steps", 30, "--out", tmp_path / "a", "--no-plot", "--animate", tmp_path / "a.gif",
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames > 10 and gif.size[0] > 500
    one_line_error(run("simulate.py", "--animate", tmp_path / "a.avi"), "--animate", ".gif")


# ---------------------------------------------------------------- sweep
def test_sweep_interrupt_resume_and_outputs(tmp_path):
    out = tmp_path / "sw"
    args = ["--lr", "logspace:-1:1:3", "--corr", "0.5,0.9", "--log-odds", "linspace:0.5:1.5:2", "--steps", 40,
            "--chunk-size", 4, "--out", out]
    first = run("sweep.py", *args, "--quiet", env={"PARTICLES_STOP_AFTER_CHUNKS": "1"})
    one_line_error(first, "--resume", code=130)
    assert not (out / "sweep.npz").exists() and pt.load(out / "sweep-partial.npz").chunks_computed == 1
    second = run("sweep.py", *args, "--resume", "--json")
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["chunks"] == {"computed": 2, "total": 3, "resumed": True}
    saved = pt.load(out / "sweep.npz")
    assert list(saved.axes) == ["lr", "corr", "log_odds", "seed"] and summary["shape"] == [3, 2, 2, 1]
    fresh = pt.sweep("equicorrelated", saved.axes, 40, chunk_size=4)  # the same sweep, uninterrupted
    for m in summary["metrics"]:
        np.testing.assert_array_equal(saved.outputs[m], fresh.outputs[m])
        np.testing.assert_array_equal(np.asarray(summary["outputs"][m], float), saved.outputs[m].astype(float))
    figures = sorted(f for f in os.listdir(out) if f.endswith(".png"))
    assert figures == ["phase-corr-log_odds.png", "phase-corr-lr.png", "phase-log_odds-lr.png"]


def test_sweep_usage_errors_exit_2(tmp_path):
    one_line_error(run("sweep.py", "--lr", "linspace:1:2"), "--lr", "linspace:a:b:k")
    one_line_error(run("sweep.py", "--p1", "0.5", "--log-odds", "1"), "frequency law")
    one_line_error(run("sweep.py", "--resume", "--out", tmp_path / "nothing"), "--resume")
    one_line_error(run("sweep.py", "--geometry", "two_particles", "--d", "3"), "--d")
    # A corrupt or foreign file where a partial sweep is expected.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sweep-partial.npz").write_bytes(b"not a zip file")
    one_line_error(run("sweep.py", "--resume", "--out", tmp_path / "bad"), "not a readable particles result")


# ------------------------------------------------------------ reproduce
def test_reproduce_one_figure(tmp_path):
    out = tmp_path / "figs"
    proc = run("reproduce.py", "--figure", "landscapes", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {"landscapes.png", "landscapes.pdf", "REPORT.md", "report.json"} <= set(os.listdir(out))
    assert "## 1. Landscapes" in (out / "REPORT.md").read_text()
    # The measured wedge of perfect accuracy matches arccos(α) (paper §3.3) to the circle grid.
    wedge = json.loads((out / "report.json").read_text())["landscapes"]["numbers"]["wedge"]
    for a, theory_deg, measured_deg in wedge:
        assert theory_deg == pytest.approx(np.degrees(np.arccos(a)), abs=1e-9)
        assert measured_deg == pytest.approx(theory_deg, abs=0.01)
    one_line_error(run("reproduce.py", "--figure", "nope"), "--figure", "nope")
    (tmp_path / "f").write_text("x")
    one_line_error(run("reproduce.py", "--figure", "1", "--out", tmp_path / "f"), "--out")


def test_console_entry_points_are_installed():
    bindir = os.path.dirname(sys.executable)
    for name in ("particles-simulate", "particles-sweep", "particles-reproduce", "particles-transformer"):
        proc = subprocess.run([os.path.join(bindir, name), "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage" in proc.stdout.lower(), (name, proc.stderr)


# ------------------------------------------------------------ every tool
TOOLS = {
    "simulate": ["--steps", "5", "--no-flow", "--no-plot"],
    "sweep": ["--lr", "1,2", "--corr", "0.5", "--steps", "10", "--no-plot"],
    "reproduce": ["--figure", "landscapes"],
    "transformer": ["--d", "8", "--lr", "1", "--steps", "2", "--batch", "4", "--seq-len", "16", "--no-predict"],
}


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tool_fails_in_one_line(tool, tmp_path, monkeypatch, capsys):
    """An output folder that cannot be created, a full disk and an interrupt at the first
    write, through each tool's `main` (in-process: `run_main` is what the console script
    runs): exit 2 or 130, one line naming the cause, nothing partial left behind."""
    import importlib

    main = importlib.import_module(f"particles.cli.{tool}").main
    prog = f"{tool}.py"

    def call(*extra):
        code = c.run_main(main, [*TOOLS[tool], "--quiet", *extra], prog=prog)
        return code, [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]

    (tmp_path / "file").write_text("x")
    code, err = call("--out", str(tmp_path / "file" / "sub"))
    assert code == 2 and len(err) == 1 and err[0].startswith(f"{prog}: error: --out"), err

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, err = call("--out", str(tmp_path / "full"))
    assert code == 2 and len(err) == 1 and "disk is full" in err[0], err
    assert os.listdir(tmp_path / "full") == []

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    code, err = call("--out", str(tmp_path / "stop"))
    assert code == 130 and len(err) == 1 and err[0].startswith(f"{prog}: interrupted"), err
    assert os.listdir(tmp_path / "stop") == []


@pytest.mark.parametrize("tool, argv, flag", [
    ("simulate", ["--n", "300000"], "--n"),
    ("sweep", ["--n", "100000", "--lr", "1", "--corr", "0.5"], "--n"),
    ("transformer", ["--batch", "1000000"], "--batch"),
])
def test_a_size_beyond_memory_is_refused_before_allocation(tool, argv, flag, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"particles.cli.{tool}").main
    code = c.run_main(main, [*argv, "--quiet", "--out", str(tmp_path / "big")], prog=f"{tool}.py")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and flag in err[0] and "GiB" in err[0], err
    assert not (tmp_path / "big").exists()
