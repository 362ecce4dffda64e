"""Refresh the explorer's screenshot on the documentation site (docs/assets/explore.png).

    python docs/hooks/explore_screenshot.py [docs/assets/explore.png]

Starts `scripts/explore.py` on a free port, opens it in headless Chromium (Debian's package,
`.ci/install-browser`, driven by Playwright), waits until the two-particle view has drawn the
paper's benign-spike run and its gradient flow, saves a screenshot and stops the server. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def main(out: str) -> int:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("explore_screenshot.py: no Chromium (run .ci/install-browser)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as runs, tempfile.TemporaryDirectory() as profile:
        server = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "explore.py"), "--no-browser",
                                   "--port", "0", "--out", runs], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, env=dict(os.environ, PARTICLES_QUIET="1"))
        try:
            url = re.search(r"http://127\.0\.0\.1:\d+/", server.stdout.readline()).group(0)
            with sync_playwright() as p:
                ctx = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                           args=FLAGS, viewport={"width": 1500, "height": 1100})
                page = ctx.new_page()
                page.goto(url)
                page.wait_for_function("() => window.Bokeh && Bokeh.documents.length && "
                                       "Bokeh.documents[0].get_model_by_name('two_numbers') && "
                                       "Bokeh.documents[0].get_model_by_name('two_numbers').tags.length > 0",
                                       timeout=180_000)
                # The flow compiles in the background and is drawn when ready.
                page.wait_for_function("() => Bokeh.documents[0].get_model_by_name('two_flow_path').data.x.length > 0",
                                       timeout=300_000)
                page.wait_for_timeout(1500)  # the last redraw
                page.screenshot(path=out)
                ctx.close()
        finally:
            server.terminate()
            server.wait(30)
    from PIL import Image

    # The page's content ends before the viewport does; plots need few colours (3x smaller).
    with Image.open(out) as im:
        small = im.convert("RGB").crop((0, 0, 1270, 940)).quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                                     dither=Image.Dither.NONE)
    small.save(out, optimize=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "assets", "explore.png")))
