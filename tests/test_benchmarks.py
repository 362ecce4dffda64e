"""The benchmark runner runs end to end in --quick mode and writes valid JSON (no timings asserted)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import run  # noqa: E402


@pytest.mark.slow
def test_quick_run_writes_json(tmp_path):
    out = tmp_path / "results.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True
    assert set(data["cases"]) == set(run.CASES)
    assert {r["case"] for r in data["rows"]} == set(run.CASES)
    errors = [r for r in data["rows"] if r["name"] == "error"]
    assert not errors, errors
    # Correctness, not speed: the integer grid tables must agree across implementations.
    (same,) = [r for r in data["rows"] if r["case"] == "grid" and r["name"].startswith("integer tables")]
    assert same["value"] is True
    # The grid is timed through the public sweep, which picks the two-particle kernel itself.
    (sweep,) = [r for r in data["rows"] if r["case"] == "grid" and r["name"].startswith("particles.sweep(")]
    assert "engine: two-particle kernel" in sweep["note"] and sweep["target"] == ">= 10x"
    assert sweep["value"] > 0 and sweep["ratio"] == pytest.approx(sweep["baseline"] / sweep["value"], rel=1e-12)
    vocab = [r for r in data["rows"] if r["case"] == "vocab"]
    assert len(vocab) == 2 and all(r["value"] > 0 for r in vocab)
    assert list(tmp_path.iterdir()) == [out]  # the atomic write left no temporary file
    assert "| case | measure |" in res.stdout


def test_write_json_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "r.json"
    run.write_json(path, {"a": 1})
    run.write_json(path, {"a": 2, "b": [1.5, None]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1.5, None]}
    assert list(tmp_path.iterdir()) == [path]


def test_table_has_one_line_per_row():
    rows = [run.row("grid", "x", 1.0, "s", baseline=2.0, baseline_name="b", ratio=2.0, target=">= 1x", met=True),
            run.row("vocab", "y", None, "s", note="pending")]
    lines = run.table(rows).splitlines()
    assert len(lines) == 4
    assert "2x" in lines[2] and "pending" in lines[3]


def test_unknown_case_is_rejected():
    with pytest.raises(SystemExit):
        run.main(["--only", "nope"])


def test_the_runner_uses_public_names_only():
    """benchmarks/run.py times what users call: no `particles._private` module or name."""
    tree = ast.parse((ROOT / "benchmarks" / "run.py").read_text())
    private = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("particles"):
            private += [node.module] if any(part.startswith("_") for part in node.module.split(".")) else []
            private += [a.name for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            private += [a.name for a in node.names
                        if a.name.startswith("particles") and any(p.startswith("_") for p in a.name.split("."))]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id == "particles":
                private.append(ast.unparse(node))
    assert private == [], private
