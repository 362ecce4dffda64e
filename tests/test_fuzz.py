"""Random (and malformed) flag combinations for the lab's scripts: every run ends with exit
0, 2 or 3, one line on error, never a traceback, and never a NaN in a file of a success."""

import json
import os
import random
import sys

import numpy as np
import pytest

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts")
sys.path.insert(0, SCRIPTS)

import _cli  # noqa: E402
import simulate  # noqa: E402
import sweep  # noqa: E402

SIMULATE_FLAGS = {
    "--n": ["1", "2", "3", "5", "0", "-2", "x", "2.5"],
    "--m": ["1", "2", "4", "0"],
    "--d": ["1", "2", "8", "0"],
    "--corr": ["0", "0.3", "0.95", "1", "-1", "-0.2", "1.5", "nan"],
    "--p": ["0.5,0.5", "0.9,0.1", "1e-12,1", "0.3", "a,b", "-1,2"],
    "--zipf": ["0", "1", "2", "-3", "inf"],
    "--targets": ["0,0", "0,1", "1,0", "5,0", "0"],
    "--lr": ["0.1", "1,10", "1e4", "1e308", "0", "-1", "inf", "nan"],
    "--steps": ["0", "1", "20", "-5", "1e3"],
    "--t1": ["0", "5", "1e12", "-1"],
    "--sgd-batch": ["1", "4", "0"],
    "--optimizer": ["gd", "sgd", "adam", "momentum", "sign", "lbfgs"],
    "--dtype": ["float64", "float32", "int8"],
    "--seed": ["0", "7", "-1"],
}
SWITCHES = ["--no-flow", "--no-plot", "--json"]

SWEEP_FLAGS = {
    "--lr": ["0.1,1", "logspace:-1:1:3", "logspace:1:2", "0", "nan"],
    "--corr": ["0.5", "linspace:0:0.9:3", "2", "x"],
    "--p1": ["0.75", "0.5,0.9", "1.5"],
    "--log-odds": ["0.5", "inf"],
    "--n": ["2", "3", "0"],
    "--steps": ["10", "0", "-1"],
    "--chunk-size": ["1", "4", "0"],
}


def _run(module, argv, capsys):
    with pytest.raises(SystemExit) as e:
        _cli.run_main(module.main, argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def _no_nan_files(folder):
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
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


@pytest.mark.parametrize("seed", range(12))
def test_simulate_fuzz(seed, tmp_path, capsys):
    rng = random.Random(seed)
    argv = _argv(rng, SIMULATE_FLAGS, rng.randint(1, 5))
    argv += [s for s in SWITCHES if rng.random() < 0.4] + ["--steps", "30", "--quiet", "--out", str(tmp_path)]
    if "--no-plot" not in argv:
        argv.append("--no-plot")  # figures are checked elsewhere; keep the fuzz fast
    code, out, err = _run(simulate, argv, capsys)
    assert code in (0, 2, 3), (argv, code, err)
    assert "Traceback" not in err and "Traceback" not in out, (argv, err)
    if code == 0:
        _no_nan_files(tmp_path)
        if "--json" in argv:
            json.loads(out)
    else:
        assert len(err.strip().splitlines()) == 1, (argv, err)


@pytest.mark.parametrize("seed", range(6))
def test_sweep_fuzz(seed, tmp_path, capsys):
    rng = random.Random(100 + seed)
    argv = _argv(rng, SWEEP_FLAGS, rng.randint(1, 4))
    argv += ["--steps", "20", "--quiet", "--no-plot", "--out", str(tmp_path / "s")]
    code, out, err = _run(sweep, argv, capsys)
    assert code in (0, 2, 3), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 0:
        _no_nan_files(tmp_path / "s")
    else:
        assert len(err.strip().splitlines()) == 1, (argv, err)
