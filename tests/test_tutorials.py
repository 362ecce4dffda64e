"""Every tutorial of the documentation runs (docs/tutorials/*.py, jupytext percent scripts).

A percent script is plain Python: each one runs once, as `python <script>` in a fresh
process (its own JAX and matplotlib state, headless, no progress bars), in a temporary
working directory. The documentation build executes the same files as notebooks
(mkdocs-jupyter); the tests do not build the site. Together they must stay within
3 minutes on 2 CPU cores: keep shapes tiny and runs short.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorials").glob("[0-9][0-9]_*.py"))
TIMEOUT_S = 150  # one tutorial; the six together take well under a minute of CPU time


def test_tutorials_exist():
    assert len(TUTORIALS) >= 6, [t.name for t in TUTORIALS]
    for path in TUTORIALS:
        text = path.read_text(encoding="utf-8")
        # A notebook title for mkdocs-jupyter (the first markdown cell's "# # Title").
        assert "# %% [markdown]\n# # " in text, f"{path.name}: no '# # Title' markdown cell"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_runs(path: Path, tmp_path: Path):
    env = dict(os.environ, MPLBACKEND="Agg", PARTICLES_QUIET="1", PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"{path.name} ran past {TIMEOUT_S} s; output so far:\n{out[-3000:]}")
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        pytest.fail(f"{path.name} failed (exit {done.returncode}, {seconds:.0f} s):\n"
                    f"--- stdout (end) ---\n{done.stdout[-2000:]}\n--- stderr (end) ---\n{done.stderr[-4000:]}")
