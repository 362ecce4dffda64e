"""The Bokeh server: one document per browser tab, compile-at-start, saves through simulate.py.

BokehJS and its styles are served by this server itself (Bokeh's "server" resources mode),
so the page requests nothing outside the host it was loaded from. Websocket connections
are accepted only from pages of this server's own address (no cross-site use of a local
app).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import logging
import os
import socket
import time
from functools import partial
from typing import Optional

from . import _compute as c
from . import _compute_many as cm
from ._inputs import ManySettings, TwoSettings
from ._warm import Warmup

TITLE = "particles explorer"


class Context:
    """What every browser session shares: the warm-up, worker threads, where saves go.

    **Arguments:** `out_dir` (saves go to OUT_DIR/explore-<time>-<view>/), `debug` (print
    tracebacks of failed updates on the server's console), `warm` (a started [`Warmup`][];
    default: [`default_warmup`][]).
    """

    def __init__(self, out_dir: str = "runs", debug: bool = False, warm: Optional[Warmup] = None,
                 lazy: bool = False):
        self.out_dir = out_dir
        self.debug = debug
        self.warm = warm if warm is not None else default_warmup(lazy).start()
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="particles-explore-save")
        self.tables = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="particles-explore-table")
        self.sessions = 0

    def close(self, timeout: float = 2.0) -> bool:
        """Stop compiling and the worker threads. **Returns:** whether every thread is idle (an
        interpreter that exits while XLA compiles on another thread aborts: see the CLI)."""
        idle = self.warm.stop(timeout)
        for pool in (self.executor, self.tables):
            pool.shutdown(wait=False, cancel_futures=True)
        busy = any(t.is_alive() for pool in (self.executor, self.tables) for t in getattr(pool, "_threads", ()))
        return idle and not busy

    def run_simulate(self, args: list) -> int:
        """`simulate.py ARGS --quiet` in this process (its compiled kernels are warm); its exit code.

        Output goes nowhere (the page reports the folder); a failure raises with its message.
        """
        from particles.cli import simulate

        sink = io.StringIO()
        with contextlib.redirect_stdout(sink):
            return simulate.main(list(args) + ["--quiet"])


def default_warmup(lazy: bool = False) -> Warmup:
    """The compile tasks, in order: what the first page draws first, then every other bucket.

    **Arguments:** `lazy`: compile only what the default views draw (the two-particle view,
    the flow, the default N-particle view); other buckets compile when first asked for.
    """
    two, many = TwoSettings(), ManySettings()

    def two_task(steps):
        return lambda: c.landscape(c.run_two(TwoSettings(steps=steps, flow=False)).problem, c.window([]))

    def many_task(size, steps):
        n = min(size, 64)
        return lambda: (cm.sphere_is_exact(),
                        cm.run_many(ManySettings(geometry="equicorrelated", n=n, m=n, d=n, steps=steps)))

    tasks = [(("two", c.bucket(two.steps, c.TWO_BUCKETS)), "the two-particle view", two_task(two.steps)),
             (("flow",), "the gradient flow", lambda: c.run_two_flow(c.two_problem(two.corr, two.p1), two)),
             (("many", c.pad_size(max(many.n, many.m)), c.bucket(many.steps, c.MANY_BUCKETS)), "the N-particle view",
              many_task(c.pad_size(max(many.n, many.m)), many.steps))]
    for b in c.TWO_BUCKETS:
        tasks.append((("two", b), f"two particles, up to {b} steps", two_task(b)))
    for size in c.PAD_SIZES:
        for b in c.MANY_BUCKETS:
            tasks.append((("many", size, b), f"N-particle systems up to {size}, {b} steps", many_task(size, b)))
    seen, out = set(), []
    for key, label, fn in tasks:  # the first occurrence of a key keeps its place
        if key not in seen:
            seen.add(key)
            out.append((key, label, fn))
    return Warmup(out, lazy=[k for k, _, _ in out[3:]] if lazy else ())


def make_document(doc, ctx: Context) -> None:
    """Fill a Bokeh document (one browser tab) with the two views."""
    from bokeh.layouts import column
    from bokeh.models import Div, TabPanel, Tabs

    from ._many import ManyView
    from ._two import TwoView

    ctx.sessions += 1
    two, many = TwoView(ctx, doc), ManyView(ctx, doc)
    header = Div(text="<h2 style='margin:4px 0'>particles explorer</h2><div>Learning associative memories with "
                      "gradient descent (Cabannes, Şimşek, Bietti, ICML 2024): GD on W is a system of particles, "
                      "one score row per input token. Every number below comes from <code>particles</code>.</div>",
                 width=1200)
    tabs = Tabs(tabs=[TabPanel(child=two.layout, title="Two particles"),
                      TabPanel(child=many.layout, title="N particles")], name="tabs")
    kernels = Div(text="", name="kernels", width=1200, styles={"color": "#666", "font-size": "11px"})
    doc.add_root(column(header, kernels, tabs, name="root"))

    def progress():
        done, total = ctx.warm.progress()
        kernels.text = (f"compiled all {total} kernel sets: every move is live" if done >= total else
                        f"compiling kernels in the background: {done}/{total} ready (sizes not ready yet wait for "
                        "theirs)")
        kernels.tags = [dict(done=done, total=total)]
        if done >= total and getattr(doc, "_particles_progress", None) is not None:
            doc.remove_periodic_callback(doc._particles_progress)
            doc._particles_progress = None

    progress()
    doc._particles_progress = doc.add_periodic_callback(progress, 1000)
    doc.title = TITLE
    doc.particles_views = (two, many)  # for tests and the benchmark
    two.update()
    many.update()


def free_port(host: str, port: int = 0) -> int:
    """`port` if it is free on `host` now (OSError if not); with 0, a free port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, port))
        return s.getsockname()[1]


def build_server(ctx: Context, host: str = "127.0.0.1", port: int = 5006):
    """A Bokeh `Server` for the explorer on host:port (port 0: a free port), not yet started.

    **Returns:** (server, url).
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    port = port or free_port(host)
    origins = {f"127.0.0.1:{port}", f"localhost:{port}", f"{host}:{port}"}
    app = Application(FunctionHandler(partial(make_document, ctx=ctx)))
    server = Server({"/": app}, address=host, port=port, allow_websocket_origin=sorted(origins), num_procs=1,
                    check_unused_sessions_milliseconds=5000, unused_session_lifetime_milliseconds=15000)
    shown = f"[{host}]" if ":" in host else host
    return server, f"http://{shown}:{port}/"


def quiet_bokeh(debug: bool) -> None:
    """Bokeh's and tornado's loggers: warnings only (everything with --debug)."""
    level = logging.INFO if debug else logging.WARNING
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    for name in ("bokeh", "tornado", "particles.explore"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False


def enable_jax_cache(path: str) -> None:
    """Keep compiled kernels in `path` between sessions (a second start skips most compiling)."""
    import jax

    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def serve(ctx: Context, host: str, port: int, *, open_browser: bool, announce=print) -> None:
    """Start the server and run until interrupted (Ctrl-C raises KeyboardInterrupt here)."""
    server, url = build_server(ctx, host, port)
    server.start()
    announce(url)
    if open_browser:
        import webbrowser

        server.io_loop.add_callback(lambda: webbrowser.open(url))
    t0 = time.perf_counter()

    def report():
        done, total = ctx.warm.progress()
        if done == total:
            announce(f"compiled {total} kernels in {time.perf_counter() - t0:.1f} s")
        else:
            server.io_loop.call_later(1.0, report)

    if ctx.debug:
        server.io_loop.call_later(1.0, report)
    try:
        server.io_loop.start()
    finally:
        server.stop()
