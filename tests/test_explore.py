"""The explorer (issue #17): its inputs and bucketed computations, and the app in a real browser.

The browser test starts `scripts/explore.py` as a user would, loads the page in headless
Chromium (Debian's `chromium`, installed by `.ci/install-browser`) through Playwright, moves
the α slider, types γ₀, switches to the N-particle view and saves, and checks every drawn
trajectory and number against `particles.gd` and `particles.analysis` for the same settings.
The page must request nothing outside 127.0.0.1. It skips, naming the fix, only where no
Chromium is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from urllib.parse import urlparse

import numpy as np
import pytest

import particles as pt
from particles import analysis as pa
from particles.explore import _compute as c
from particles.explore import _compute_many as cm
from particles.explore import _inputs as inp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


# ------------------------------------------------------------ no browser
def test_settings_are_validated_like_flags():
    s = inp.two_settings("0.5", 0.75, 10.0, 35, "1, -2", True)
    assert (s.corr, s.p1, s.lr, s.steps, s.gamma0) == (0.5, 0.75, 10.0, 35, (1.0, -2.0))
    bad = [lambda: inp.two_settings(1.5, 0.75, 1, 10, "0, 0", False),
           lambda: inp.two_settings(0.5, 0.75, float("nan"), 10, "0, 0", False),
           lambda: inp.two_settings(0.5, 0.75, 1, 10.5, "0, 0", False),
           lambda: inp.two_settings(0.5, 0.75, 1, 10, "abc", False),
           lambda: inp.many_settings("sphere", 65, 5, 3, 0, 1, 1, 10, 0),
           lambda: inp.many_settings("equicorrelated", 8, 8, 4, 0, 1, 1, 10, 0),
           lambda: inp.many_settings("equicorrelated", 8, 8, 8, -0.5, 1, 1, 10, 0),
           lambda: inp.many_settings("torus", 8, 8, 8, 0, 1, 1, 10, 0)]
    for call in bad:
        with pytest.raises(inp.InputError, match="is not allowed"):
            call()
    with pytest.raises(inp.InputError, match="multiply-adds"):
        inp.check_budget(64, 64, 10**7)


def test_command_lines_reproduce_the_settings():
    s = inp.two_settings(0.95, 0.75, 10, 35, "0, 0", False)
    assert inp.command_line(inp.two_command(s)) == \
        "python scripts/simulate.py --n 2 --corr 0.95 --p 0.75,0.25 --lr 10 --steps 35 --no-flow"
    m = inp.many_settings("sphere", 5, 5, 3, 0, 1, 10, 100, 7)
    assert inp.many_command(m) == ["--n", "5", "--m", "5", "--d", "3", "--geometry", "sphere", "--seed", "7",
                                   "--zipf", "1", "--lr", "10", "--steps", "100", "--no-flow"]
    from particles.cli import simulate

    args = simulate.build_parser().parse_args(inp.two_command(s))
    simulate.validate(args)  # the command the page shows is one simulate.py accepts


def test_bucketed_runs_equal_gd():
    # Two particles: the 1000-step bucket cut at 37 steps, from a γ₀ away from 0.
    s = inp.two_settings(0.6, 0.7, 3.0, 37, "1.5, -2", False)
    r = c.run_two(s)
    ref = pt.gd(c.two_problem(0.6, 0.7, (1.5, -2.0)), 3.0, 37)
    np.testing.assert_array_equal(r.margins, np.asarray(ref.margins))
    np.testing.assert_allclose(r.gamma[0], [1.5, -2.0], atol=1e-12)
    assert r.events["first_full_accuracy"] == (pa.first_full_accuracy(ref) if pa.first_full_accuracy(ref) is not None
                                               else -1)
    assert r.events["loss_spikes"] == len(pa.loss_spikes(ref))


# ------------------------------------------------------------ in a browser
def _chromium():
    for name in (os.environ.get("PARTICLES_CHROMIUM", ""), "chromium", "chromium-browser"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    path = _chromium()
    if path is None:
        pytest.skip("no Chromium on this machine: run .ci/install-browser (Debian's chromium; needs apt-get and root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip('Playwright is not installed: pip install -e ".[test]"')
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=path, headless=True, args=FLAGS,
                                                   viewport={"width": 1500, "height": 1200})
        yield ctx
        ctx.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    pytest.importorskip("bokeh", reason='Bokeh is not installed: pip install -e ".[explore]"')
    out = tmp_path_factory.mktemp("explore-runs")
    err = open(out / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "explore.py"), "--no-browser", "--port",
                             "0", "--no-jax-cache", "--lazy", "--out", str(out)], stdout=subprocess.PIPE, stderr=err, text=True,
                            env=dict(os.environ, PARTICLES_QUIET="1"))
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
    assert match, f"no URL printed: {line!r}"
    yield match.group(0), out, err
    proc.terminate()
    proc.wait(30)
    proc.stdout.close()
    err.close()


def _model(page, name, attr="tags"):
    return page.evaluate(f"() => {{ const m = Bokeh.documents[0].get_model_by_name({json.dumps(name)}); "
                         f"const v = m.{attr}; return JSON.parse(JSON.stringify(v, (k, x) => "
                         f"ArrayBuffer.isView(x) ? Array.from(x) : x)); }}")


def _wait_tags(page, name, pred, timeout=90_000):
    page.wait_for_function(f"() => window.Bokeh && Bokeh.documents.length && "
                           f"Bokeh.documents[0].get_model_by_name({json.dumps(name)}) && "
                           f"Bokeh.documents[0].get_model_by_name({json.dumps(name)}).tags.length > 0 && "
                           f"({pred})(Bokeh.documents[0].get_model_by_name({json.dumps(name)}).tags[0])",
                           timeout=timeout)
    return _model(page, name)[0]


def _command(page, prefix):
    """The command line shown in the view (the text "copy command" copies)."""
    return _model(page, f"{prefix}_command", "value")


def _path(page):
    data = _model(page, "two_gd", "data")
    return np.c_[data["x"], data["y"]]


def _expected_path(corr, p1, lr, steps, gamma0=(0.0, 0.0)):
    problem = c.two_problem(corr, p1, gamma0)
    traj = pt.gd(problem, lr, steps)
    return traj, pa.gamma_of_margins(problem, np.asarray(traj.margins))


def test_explorer_in_a_browser(app, browser):
    url, out, log = app
    page = browser.new_page()
    requests, sockets = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("websocket", lambda w: sockets.append(w.url))
    page.goto(url)

    # The first view (the paper's benign spike), then one keyboard step left on the steps
    # slider (1000 -> 977 steps: a run cut from its bucket) and on the α slider (0.95 -> 0.94).
    _wait_tags(page, "two_numbers", "t => t.corr === 0.95")
    before = _path(page)
    for name, pred in (("two_steps", "t => t.steps === 977"), ("two_corr", "t => t.corr === 0.94")):
        page.locator(f".pe-{name.replace('_', '-')} .noUi-handle").first.focus()
        page.keyboard.press("ArrowLeft")
        tags = _wait_tags(page, "two_numbers", pred)
        after = _path(page)
        assert after.shape != before.shape or not np.allclose(after, before)
        before = after
    traj, gamma = _expected_path(0.94, 0.75, 10.0, 977)
    np.testing.assert_allclose(after, gamma, rtol=1e-9, atol=1e-9)
    assert tags["first_full_accuracy"] == pa.first_full_accuracy(traj)
    assert tags["loss_spikes"] == len(pa.loss_spikes(traj)) > 0
    assert tags["oscillations"] == list(pa.oscillations(traj))
    assert tags["forgets"] is True
    command = _command(page, "two")
    assert command == "python scripts/simulate.py --n 2 --corr 0.94 --p 0.75,0.25 --lr 10 --steps 977"

    # A bad value typed into the page is a message, not a traceback; a good one is drawn.
    box = page.locator(".pe-two-gamma0 input").first
    box.fill("one, two")
    box.press("Enter")
    page.wait_for_function("() => Bokeh.documents[0].get_model_by_name('two_status').text.includes('not allowed')")
    box.fill("1, -2")
    box.press("Enter")
    _wait_tags(page, "two_numbers", "t => t.gamma0[0] === 1 && t.gamma0[1] === -2")
    _, gamma = _expected_path(0.94, 0.75, 10.0, 977, (1.0, -2.0))
    np.testing.assert_allclose(_path(page), gamma, rtol=1e-9, atol=1e-9)

    # A click on the plane sets γ₀; "start from γ₀ = 0" and "save" write simulate.py's files.
    plane = page.locator(".pe-two-plane").first.bounding_box()
    page.mouse.click(plane["x"] + plane["width"] * 0.5, plane["y"] + plane["height"] * 0.4)
    page.wait_for_function("() => Bokeh.documents[0].get_model_by_name('two_gamma0').value !== '1, -2'")
    page.locator(".pe-two-reset button").first.click()
    _wait_tags(page, "two_numbers", "t => t.gamma0[0] === 0 && t.gamma0[1] === 0")
    page.screenshot(path=str(out / "explore.png"))
    _check_not_blank(out / "explore.png")
    page.locator(".pe-two-save button").first.click()

    # The N-particle view: every margin against gd on the library's own problem.
    page.locator(".bk-tab", has_text="N particles").first.click()
    tags = _wait_tags(page, "many_numbers", "t => t.n === 5")
    m = inp.ManySettings()
    ref = pt.gd(cm.library_problem(m), m.lr, m.steps)
    data = _model(page, "many_margins", "data")
    rows, ys = np.asarray(data["xs"][0], np.int64), np.array(data["ys"])
    np.testing.assert_allclose(ys.T, np.asarray(ref.margins)[rows], rtol=1e-9, atol=1e-9)
    assert tags["oscillations"] == list(pa.oscillations(ref))
    assert _command(page, "many").endswith("--lr 10 --steps 100 --no-flow")
    page.wait_for_function("() => Bokeh.documents[0].get_model_by_name('many_table').tags.length > 0",
                           timeout=90_000)
    assert "underparameterized" in _model(page, "many_table")[0]["regimes"]  # d = 3 < N = 5

    page.wait_for_function("() => Bokeh.documents[0].get_model_by_name('two_saved').tags.length > 0",
                           timeout=90_000)
    folder = _model(page, "two_saved")[0]
    assert {"figure.png", "summary.json", "trajectory.npz"} <= set(os.listdir(folder))
    saved = pt.load(os.path.join(folder, "trajectory.npz"))
    np.testing.assert_allclose(np.asarray(saved["gd_lr0"].margins), np.asarray(traj.margins), rtol=1e-9, atol=1e-9)

    hosts = {urlparse(u).hostname for u in requests + sockets if urlparse(u).scheme in ("http", "https", "ws", "wss")}
    assert hosts == {"127.0.0.1"}, f"the page requested {sorted(hosts)}"
    log.seek(0)
    assert "Traceback" not in log.read()


def _check_not_blank(path):
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB"), np.int64)[::3, ::3]
    ink = np.mean(np.any(img < 235, axis=-1))
    colours = len(np.unique((img // 8) @ np.array([1024, 32, 1])))
    assert ink > 0.05 and colours > 40, f"the screenshot looks blank ({ink:.1%} ink, {colours} colours)"


def test_the_plane_window_holds_the_paths_and_stays_put_for_small_moves():
    """Half-width one of `NICE` × 10^k, centre on a grid of a quarter of it, every path inside;
    a path that moves by a little keeps the window (the page then keeps its landscape)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        scale = 10.0 ** rng.uniform(-1, 3)
        path = rng.normal(size=(50, 2)) * scale + rng.normal(size=2) * scale
        x0, x1, y0, y1 = c.window([path, None])
        half = (x1 - x0) / 2
        mantissa = half / 10.0 ** np.floor(np.log10(half))
        assert np.isclose(y1 - y0, 2 * half) and min(abs(mantissa - m) for m in c.NICE) < 1e-9
        assert np.all(path[:, 0] >= x0) and np.all(path[:, 0] <= x1) and np.all(path[:, 1] >= y0)
        assert np.all(path[:, 1] <= y1) and x0 <= 0 <= x1 and y0 <= 0 <= y1 and half >= 1
    _, gamma = _expected_path(0.95, 0.75, 10.0, 1000)
    _, moved = _expected_path(0.95, 0.75, 10.03, 1000)
    assert c.window([gamma]) == c.window([moved])
