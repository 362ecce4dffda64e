"""Latency of the explorer (issue #17): slider moves and the first page load.

    python benchmarks/explore.py              # server-side and in-browser, ~2-4 minutes
    python benchmarks/explore.py --no-browser # server-side only
    python benchmarks/explore.py --json out.json

Three measurements, each after the kernels it needs are compiled:

- **server**: `View.update()` in-process for one slider move (validation, `particles.gd`,
  events, theory, landscape, and the Bokeh model updates), median of `--moves` moves after
  two warm-up moves. Two particles, 1,000 steps (the default view), and N = M = d = 64
  equicorrelated, 1,000 steps.
- **browser**: the same moves made in headless Chromium with the keyboard on the η slider,
  timed from the key press until the page's numbers changed and two animation frames were
  drawn (so the websocket round trip and BokehJS's update are in), median of `--moves`.
- **first load**: from starting `scripts/explore.py` until the page shows the two-particle
  results, with an empty JAX cache (first start ever) and with a warm one (a second start).

Every row records the load average of the machine when it ran: the numbers are wall times on
whatever the machine is doing, not CPU times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
N64 = dict(geometry="equicorrelated", n=64, m=64, d=64, corr=0.2, steps=1000)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def row(name, seconds, target, note=""):
    return dict(name=name, median_ms=round(1000 * seconds, 1), target_ms=target, met=1000 * seconds <= target,
                load=load(), note=note)


# ------------------------------------------------------------------ server
def server_side(moves: int) -> list:
    """Median `View.update()` time per move, in-process, after warm-up."""
    from bokeh.document import Document

    from particles.explore._server import Context, make_document

    ctx = Context(out_dir=tempfile.mkdtemp())
    ctx.warm.wait_all()
    doc = Document()
    make_document(doc, ctx)
    two, many = doc.particles_views
    two.flow.active = []  # the flow is its own toggle; the figure is GD, 1,000 steps

    def timed(view, widget, values):
        times = []
        for v in values:
            widget.value = v
            t = time.perf_counter()
            assert view.update(), view.status.text
            times.append(time.perf_counter() - t)
        return statistics.median(times[2:])

    out = [row("two particles, 1000 steps (server)", timed(two, two.lr, [0.9 + 0.003 * k for k in range(moves + 2)]),
               150)]
    two.flow.active = [0]
    out.append(row("two particles + flow, 1000 steps (server)",
                   timed(two, two.lr, [0.8 + 0.003 * k for k in range(moves + 2)]), 150))
    for k, v in N64.items():
        if k == "steps":
            import math

            many.steps.value = math.log10(v)
        elif k == "geometry":
            many.geometry.value = v
        else:
            getattr(many, k).value = v
    out.append(row("N = M = d = 64, 1000 steps (server)",
                   timed(many, many.lr, [0.3 + 0.003 * k for k in range(moves + 2)]), 500))
    ctx.close(0.0)
    return out


# ----------------------------------------------------------------- browser
def start_app(cache: str | None, out: str):
    cmd = [sys.executable, str(ROOT / "scripts" / "explore.py"), "--no-browser", "--port", "0", "--out", out]
    cmd += ["--jax-cache", cache] if cache else ["--no-jax-cache"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = re.search(r"http://\S+", proc.stdout.readline()).group(0)
    return proc, url, t0


def ready(page, name, pred, timeout=300_000):
    page.wait_for_function(f"() => window.Bokeh && Bokeh.documents.length && "
                           f"Bokeh.documents[0].get_model_by_name('{name}') && "
                           f"Bokeh.documents[0].get_model_by_name('{name}').tags.length > 0 && "
                           f"({pred})(Bokeh.documents[0].get_model_by_name('{name}').tags[0])", timeout=timeout)


def frames(page):
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def browser_moves(page, prefix, moves):
    handle = page.locator(f".pe-{prefix}-lr .noUi-handle").first
    times, shown = [], []
    for k in range(moves + 2):
        lr = page.evaluate(f"() => Bokeh.documents[0].get_model_by_name('{prefix}_numbers').tags[0].lr")
        handle.focus()
        t = time.perf_counter()
        page.keyboard.press("ArrowRight" if k % 2 == 0 else "ArrowLeft")
        ready(page, f"{prefix}_numbers", f"t => t.lr !== {lr}")
        shown.append(time.perf_counter() - t)
        frames(page)
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:]), statistics.median(shown[2:])


def in_browser(moves: int) -> list:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium: run .ci/install-browser, or pass --no-browser")
    out, cache = [], tempfile.mkdtemp()
    with sync_playwright() as p:
        for label, cache_dir in (("empty JAX cache", cache), ("warm JAX cache", cache)):
            proc, url, t0 = start_app(cache_dir, tempfile.mkdtemp())
            try:
                with tempfile.TemporaryDirectory() as profile:
                    ctx = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                               args=FLAGS, viewport={"width": 1500, "height": 1200})
                    page = ctx.new_page()
                    page.goto(url)
                    ready(page, "two_numbers", "t => true")
                    frames(page)
                    out.append(row(f"first load, {label} (start to drawn)", time.perf_counter() - t0, 10_000,
                                   "includes starting Python and Chromium"))
                    if label.startswith("warm"):
                        # Time moves only once nothing compiles in the background any more.
                        ready(page, "kernels", "t => t.done >= t.total")
                        page.locator(".pe-two-flow input").first.uncheck()
                        drawn, shown = browser_moves(page, "two", moves)
                        out.append(row("two particles, 1000 steps (browser)", drawn, 150,
                                       f"numbers updated after {1000 * shown:.0f} ms, then drawn"))
                        page.locator(".bk-tab", has_text="N particles").first.click()
                        ready(page, "many_numbers", "t => true")
                        page.evaluate("() => { const d = Bokeh.documents[0]; "
                                      + " ".join(f"d.get_model_by_name('many_{k}').value = {json.dumps(v)};"
                                                 for k, v in N64.items() if k != "steps")
                                      + " d.get_model_by_name('many_steps').value = 3; }")
                        ready(page, "many_numbers", "t => t.n === 64 && t.steps === 1000")
                        drawn, shown = browser_moves(page, "many", moves)
                        out.append(row("N = M = d = 64, 1000 steps (browser)", drawn, 500,
                                       f"numbers updated after {1000 * shown:.0f} ms, then drawn"))
                    ctx.close()
            finally:
                proc.terminate()
                proc.wait(30)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moves", type=int, default=7, help="timed moves per case (after 2 warm-up moves)")
    ap.add_argument("--no-browser", action="store_true", help="server-side measurements only")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    rows = server_side(args.moves)
    if not args.no_browser:
        rows += in_browser(args.moves)
    print(f"{'case':48} {'median ms':>10} {'target':>7}  met  load (1/5/15 min)")
    for r in rows:
        print(f"{r['name']:48} {r['median_ms']:>10} {r['target_ms']:>7}  {'yes' if r['met'] else 'NO ':3}  {r['load']}"
              + (f"  ({r['note']})" if r["note"] else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(cores=os.cpu_count(), rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
