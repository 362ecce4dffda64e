"""particles.explore: an interactive explorer of the particle dynamics in the browser.

    python scripts/explore.py            (or: particles-explore; --port, --host, --no-browser)

A local Bokeh server with two views: the paper's two particles in the γ-plane (landscape,
GD and flow paths, losses, margins against theory) and N-particle memories (every margin,
the loss, `analysis.compare`'s table). Every number comes from the library: `particles.gd`,
`particles.flow`, `particles.events`, `particles.theory` and `particles.analysis`; this
package only pads and buckets their inputs so that a slider move never compiles (see
`particles.explore._compute`). Needs the `explore` extra (Bokeh).

Modules: `_inputs` (ranges, validation, the size guard, the simulate.py command line),
`_compute` and `_compute_many` (the bucketed computations), `_warm` (compiling at start-up),
`_view`, `_two`, `_many` (the page), `_server` (the Bokeh server).
"""

from ._inputs import InputError as InputError, ManySettings as ManySettings, TwoSettings as TwoSettings


def __getattr__(name: str):
    # The server and the views import Bokeh: only when asked for, so that the computations
    # (and their tests) work without it.
    if name in ("Context", "build_server", "serve", "make_document", "default_warmup"):
        from . import _server

        return getattr(_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
