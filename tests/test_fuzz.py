"""Random (and malformed) flag combinations for the command-line tools: every run ends with exit
0, 2 or 3, one line on error, never a traceback, and never a NaN in a file of a success.

The tools run in-process through their console-script entry points (`particles.cli.simulate.entry`,
`particles.cli.sweep.entry`: `sys.exit(run_main(main, ...))`), so argparse's own errors are seen
with the exit code a user gets.
"""

import json
import os
import random
import sys

import numpy as np
import pytest

from particles.cli import _common, simulate, sweep

SIMULATE_FLAGS = {
    "--n": ["1", "2", "3", "5", "0", "-2", "x", "2.5"],
    "--m": ["1", "2", "4", "0"],
    "--d": ["1", "2", "8", "0"],
    "--geometry": ["equicorrelated", "sphere", "cube"],
    "--corr": ["0", "0.3", "0.95", "1", "-1", "-0.2", "1.5", "nan"],
    "--p": ["0.5,0.5", "0.9,0.1", "1e-12,1", "0.3", "a,b", "-1,2"],
    "--zipf": ["0", "1", "2", "-3", "inf"],
    "--targets": ["0,0", "0,1", "1,0", "5,0", "0"],
    "--lr": ["0.1", "1,10", "1e4", "1e308", "0", "-1", "inf", "nan", "logspace:-1:1:2"],
    "--steps": ["0", "1", "20", "-5", "1e3"],
    "--t1": ["0", "5", "1e12", "-1", "inf"],
    "--sgd-batch": ["1", "4", "0"],
    "--optimizer": ["gd", "sgd", "adam", "momentum", "sign", "lbfgs"],
    "--dtype": ["float64", "float32", "int8"],
    "--seed": ["0", "7", "-1"],
}
SWITCHES = ["--no-flow", "--no-plot", "--json"]

SWEEP_FLAGS = {
    "--geometry": ["equicorrelated", "two_particles", "sphere", "cube"],
    "--lr": ["0.1,1", "logspace:-1:1:3", "logspace:1:2", "0", "nan"],
    "--corr": ["0.5", "linspace:0:0.9:3", "2", "x"],
    "--p1": ["0.75", "0.5,0.9", "1.5"],
    "--log-odds": ["0.5", "inf"],
    "--zipf": ["1", "0,2", "nan"],
    "--n": ["2", "3", "0"],
    "--m": ["2", "3", "0"],
    "--d": ["2", "4", "0"],
    "--seed": ["0", "0,1", "-1"],
    "--metrics": ["first_full_accuracy", "final_loss,max_spike", "bogus"],
    "--sgd-batch": ["1", "4", "0"],
    "--init-std": ["0", "0.5", "-1", "nan"],
    "--steps": ["10", "0", "-1"],
    "--chunk-size": ["1", "4", "0"],
}


def _run(module, prog, argv, capsys, monkeypatch):
    """Run a tool as its console script does; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [prog, *argv])
    with pytest.raises(SystemExit) as e:
        module.entry()
    out, err = capsys.readouterr()
    return e.value.code, out, err


def _no_nan_files(folder):
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        assert not name.startswith(".tmp"), f"temporary file left: {path}"
        if name.endswith(".json"):
            with open(path) as f:
                text = f.read()
            assert '"nan"' not in text and "NaN" not in text, f"NaN in {path}"
            json.loads(text)
        elif name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    a = data[key]
                    if a.dtype.kind == "f":
                        assert not np.isnan(a).any(), f"NaN in {path}:{key}"


def _argv(rng, flags, k):
    argv = []
    for flag in rng.sample(sorted(flags), k):
        argv += [flag, rng.choice(flags[flag])]
    return argv


def _check(code, out, err, argv, folder):
    assert code in (_common.EXIT_OK, _common.EXIT_USAGE, _common.EXIT_NUMERICAL), (argv, code, err)
    assert "Traceback" not in err and "Traceback" not in out, (argv, err)
    if code == 0:
        _no_nan_files(folder)
        if "--json" in argv:
            json.loads(out)
    else:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert len(lines) == 1, (argv, err)


@pytest.mark.parametrize("seed", range(12))
def test_simulate_fuzz(seed, tmp_path, capsys, monkeypatch):
    rng = random.Random(seed)
    argv = _argv(rng, SIMULATE_FLAGS, rng.randint(1, 5))
    argv += [s for s in SWITCHES if rng.random() < 0.4] + ["--steps", "30", "--quiet", "--out", str(tmp_path)]
    if "--no-plot" not in argv:
        argv.append("--no-plot")  # figures are checked elsewhere; keep the fuzz fast
    code, out, err = _run(simulate, "simulate.py", argv, capsys, monkeypatch)
    _check(code, out, err, argv, tmp_path)


@pytest.mark.parametrize("seed", range(8))
def test_sweep_fuzz(seed, tmp_path, capsys, monkeypatch):
    rng = random.Random(100 + seed)
    argv = _argv(rng, SWEEP_FLAGS, rng.randint(1, 4))
    argv += ["--steps", "20", "--quiet", "--no-plot", "--out", str(tmp_path / "s")]
    code, out, err = _run(sweep, "sweep.py", argv, capsys, monkeypatch)
    _check(code, out, err, argv, tmp_path / "s")


def test_the_fuzz_reaches_every_outcome(tmp_path, capsys, monkeypatch):
    """The harness can tell the outcomes apart: a success, a usage error from argparse, one from
    the tool's own checks, and a numerical failure (scores of size 1e308 overflow)."""
    ok = _run(simulate, "simulate.py", ["--steps", "5", "--no-flow", "--no-plot", "--quiet", "--out",
                                        str(tmp_path / "a")], capsys, monkeypatch)
    assert ok[0] == 0 and sorted(os.listdir(tmp_path / "a")) == ["summary.json", "trajectory.npz"]
    parse = _run(simulate, "simulate.py", ["--n", "x"], capsys, monkeypatch)
    assert parse[0] == 2 and "--n" in parse[2] and len(parse[2].strip().splitlines()) == 1
    usage = _run(simulate, "simulate.py", ["--corr", "1.5", "--out", str(tmp_path / "b")], capsys, monkeypatch)
    assert usage[0] == 2 and "--corr=1.5 is not allowed" in usage[2]
    bad = _run(simulate, "simulate.py", ["--lr", "1e308", "--steps", "5", "--no-flow", "--no-plot", "--quiet",
                                         "--out", str(tmp_path / "c")], capsys, monkeypatch)
    assert bad[0] == 3 and "numerical failure" in bad[2] and len(bad[2].strip().splitlines()) == 1
