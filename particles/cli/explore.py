"""Explore the particle dynamics in the browser: a local web app over `particles`.

    python scripts/explore.py            (or: particles-explore)

Starts a Bokeh server on 127.0.0.1 (--port, default 5006; 0 picks a free port), prints its
URL and opens it in the browser (--no-browser: don't). Two views: the paper's two particles
in the γ-plane (sliders for α, p₁, η, steps; click to set γ₀) and N-particle memories
(equicorrelated or random-sphere, N up to 64). Every kernel is compiled once at start-up,
in the background; the page shows "compiling" until its kernels are ready. Compiled kernels
are kept in --jax-cache (default ~/.cache/particles/jax) so that a second start is faster.

The app has no authentication: it binds to 127.0.0.1 unless --host is given. "save" in the
page runs simulate.py with the page's settings into --out (default runs/). Needs Bokeh
(`pip install -e ".[explore]"`). Exit codes: 0 ok, 2 bad flag or input (a port in use),
130 stopped with Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from . import _common as c

LOCAL = ("127.0.0.1", "localhost", "::1")


def build_parser():
    p = c.ArgumentParser(prog="explore.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=5006, help="port to listen on (default %(default)s; 0: a free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default %(default)s; anything else exposes an app without authentication)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.add_argument("--out", default="runs", help="folder for the page's 'save' (default %(default)s/)")
    p.add_argument("--jax-cache", default=os.path.join("~", ".cache", "particles", "jax"),
                   help="folder of JAX's persistent compilation cache (default %(default)s)")
    p.add_argument("--no-jax-cache", action="store_true", help="do not keep compiled kernels between starts")
    p.add_argument("--lazy", action="store_true",
                   help="compile only what the default views draw at start-up; other sizes compile when first used")
    c.add_common(p, json_flag=False)
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    c.check(0 <= args.port <= 65535, "--port", args.port, "an integer in [0, 65535] (0: a free port)")
    c.check(bool(args.host.strip()), "--host", args.host, "an address such as 127.0.0.1")
    out = c.out_folder("--out", args.out)
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        raise c.UsageError("explore", "bokeh", 'Bokeh is not installed: pip install -e ".[explore]"') from None
    log = c.Log(not args.quiet)
    if args.host not in LOCAL:
        sys.stderr.write(f"explore.py: warning: binding to {args.host}: the app has no authentication; anyone who "
                         "can reach this address can run computations on this machine and write into --out.\n")
    from particles.explore import _server

    _server.quiet_bokeh(args.debug)
    if not args.no_jax_cache:
        try:
            _server.enable_jax_cache(os.path.expanduser(args.jax_cache))
        except OSError as e:
            raise c.UsageError("--jax-cache", args.jax_cache, f"a folder that can be created ({e.strerror or e}); "
                               "or pass --no-jax-cache") from None
    if args.port:
        try:  # before anything compiles: a busy port is a usage error, not a crash at exit
            _server.free_port(args.host, args.port)
        except OSError as e:
            raise c.UsageError("--port", args.port, f"a free port on {args.host} ({e.strerror or e}); try --port 0") \
                from None
    ctx = _server.Context(out_dir=out, debug=args.debug, lazy=args.lazy)
    code = c.EXIT_OK
    try:
        code = _serve(ctx, args, log)
    except (c.UsageError, OSError) as e:
        sys.stderr.write(f"explore.py: error: {c._describe(e) if isinstance(e, OSError) else e}\n")
        code = c.EXIT_USAGE
    finally:
        if not ctx.close(timeout=2.0):
            # A compile still runs on a worker thread, and XLA aborts an interpreter that shuts
            # down under it: leave without the shutdown (nothing is left to write).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return code


def _serve(ctx, args, log) -> int:
    from particles.explore import _server

    try:
        server, url = _server.build_server(ctx, args.host, args.port)
    except OSError as e:
        raise c.UsageError("--port", args.port, f"a free port on {args.host} ({e.strerror or e}); try --port 0") \
            from None
    server.start()
    print(f"particles explorer: {url}", flush=True)  # even with --quiet: the one thing to know
    log("compiling kernels in the background (the page shows it); Ctrl-C stops")
    if not args.no_browser:
        import webbrowser

        server.io_loop.add_callback(lambda: webbrowser.open(url))
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        sys.stderr.write("explore.py: stopped (Ctrl-C)\n")
        return c.EXIT_INTERRUPTED
    finally:
        server.stop()
    return c.EXIT_OK


def entry() -> None:
    c.entry(main, "explore.py")


if __name__ == "__main__":
    entry()
