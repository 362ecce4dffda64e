"""What both views share: coalesced updates, messages instead of tracebacks, the command
box ("copy command", "save") and a few widgets.

A slider drag sends many values; each `on_change` only marks the view dirty, and one update
per server tick reads the widgets' latest values. Every update validates its inputs first
(`_inputs`): a bad value becomes a message in the view's status line, and an unexpected
error is reported there too (with the traceback on the server's console only under
`--debug`), so no page input can make the server print a traceback by default.
"""

from __future__ import annotations

import html
import logging
import os
import time
import traceback
from typing import Optional

from bokeh.layouts import column, row
from bokeh.models import (Button, ColumnDataSource, CustomJS, CustomJSTickFormatter, Div, LinearAxis,
                          LinearScale, Range1d, Slider, TextInput)
from bokeh.plotting import figure

from ._inputs import InputError, command_line

log = logging.getLogger("particles.explore")

OK_STYLES = {"color": "#333", "min-height": "1.4em"}
BAD_STYLES = {"color": "#b00020", "font-weight": "bold", "min-height": "1.4em"}
BAD_STYLE = "color:#b00020;font-weight:bold"


BLUE, ORANGE, GREEN = "#0072B2", "#D55E00", "#009E73"  # Okabe-Ito, as analysis' plots
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"


def loss_figure(series, spikes, **options):
    """The loss (log scale), the 0-1 loss on a linear twin axis (dotted) and the spikes (▼) of
    `series` (columns step, loss, zero_one) and `spikes` (step, loss); `options` go to
    `figure` (size, name, axis labels)."""
    f = figure(y_axis_type="log", title="loss (line), 0-1 loss (dotted, right), spikes ▼", x_axis_label="step",
               tools=TOOLS, **options)
    f.extra_y_ranges = {"zo": Range1d(-0.03, 1.03)}
    f.extra_y_scales = {"zo": LinearScale()}  # else the twin axis inherits the log scale
    f.add_layout(LinearAxis(y_range_name="zo", axis_label="0-1 loss"), "right")
    f.line("step", "loss", source=series, color=BLUE, line_width=1.5)
    f.line("step", "zero_one", source=series, color=BLUE, line_dash="dotted", y_range_name="zo")
    f.scatter("step", "loss", source=spikes, marker="inverted_triangle", size=9, color=ORANGE)
    return f


NUMBERS_LINE = 17  # px per line of a numbers panel


def numbers_panel(name: str, width: int, lines: int, key_width: int):
    """A panel of `lines` lines "key  value" (keys bold) drawn on a canvas; **returns** (figure,
    source); `show_numbers(source, pairs)` writes it.

    Canvas text rather than a Div: in BokehJS a Div's new text re-lays out the whole page
    (20–50 ms per slider move in headless Chromium, by the renderer's profiler), where new
    data only repaints this panel."""
    height = NUMBERS_LINE * lines + 4
    source = ColumnDataSource(dict(y=[], key=[], value=[]), name=f"{name}_rows")
    f = figure(width=width, height=height, x_range=Range1d(0, width), y_range=Range1d(-height, 0), name=name,
               x_axis_type=None, y_axis_type=None, tools="", toolbar_location=None, min_border=0,
               outline_line_color=None)
    f.grid.visible = False
    style = dict(source=source, y="y", text_font_size="12px", text_baseline="middle", text_color="#333")
    f.text(x=4, text="key", text_font_style="bold", **style)
    f.text(x=key_width, text="value", **style)
    return f, source


def show_numbers(source: ColumnDataSource, pairs: list) -> None:
    """Write the (key, value) text pairs into a `numbers_panel`'s source, one line each."""
    source.data = dict(y=[-NUMBERS_LINE * (k + 0.5) - 2 for k in range(len(pairs))],
                       key=[k for k, _ in pairs], value=[v for _, v in pairs])


def log_slider(name: str, title: str, lo: float, hi: float, value: float, *, integer: bool = False,
               width: int = 280) -> Slider:
    """A slider over log10 of the value; the page shows the value itself (4 digits / an int)."""
    import math

    fmt = "return String(Math.round(10 ** tick));" if integer else "return (10 ** tick).toPrecision(3);"
    return Slider(start=math.log10(lo), end=math.log10(hi), value=math.log10(value), step=0.01, title=title,
                  name=name, format=CustomJSTickFormatter(code=fmt), width=width, css_classes=[css(name)])


def css(name: str) -> str:
    """The CSS class of the widget named `name` (how tests and scripts find it in the page)."""
    return "pe-" + name.replace("_", "-")


def from_log(x: float, integer: bool = False):
    """The value of a log slider position (a finite number, or the input as it came)."""
    try:
        v = 10.0 ** float(x)
    except (TypeError, ValueError, OverflowError):
        return x  # the validation names it
    return int(round(v)) if integer else v


class View:
    """Base of a view: `read()` validates the widgets into settings, `compute(settings)` runs,
    `draw(settings, result)` pushes to the page; `key(settings)` names the compiled bucket."""

    prefix = "view"

    def __init__(self, ctx, doc):
        self.ctx, self.doc = ctx, doc
        self._scheduled = False
        self._waiting = False
        self.status = Div(text="", name=f"{self.prefix}_status", width=900, styles=OK_STYLES)
        # An input box, not a Div: a new value is written into the box, where a Div's new text
        # re-lays out the whole page (~20 ms per move in Chromium). Edits typed into it are
        # ignored: it shows the command of the sliders' settings.
        self.command = TextInput(value="", title="the same run from the command line", name=f"{self.prefix}_command",
                                 width=900, styles={"font-family": "monospace"})
        # The numbers of the last update for programs (tests, benchmarks) in `tags`, on a model
        # the page does not draw: any change to a Div re-lays out the page (~20 ms in Chromium).
        self.values = ColumnDataSource(data={}, name=f"{self.prefix}_numbers")
        doc.add_root(self.values)
        self.copy = Button(label="copy command", name=f"{self.prefix}_copy", width=130, css_classes=[css(f"{self.prefix}_copy")])
        self.save = Button(label="save", name=f"{self.prefix}_save", width=90, button_type="primary",
                           css_classes=[css(f"{self.prefix}_save")])
        self.saved = Div(text="", name=f"{self.prefix}_saved", width=640)
        self.copy.js_on_click(CustomJS(args=dict(box=self.command), code="""
            const text = box.value;
            if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text); }
            else { const t = document.createElement("textarea"); t.value = text; document.body.appendChild(t);
                   t.select(); document.execCommand("copy"); t.remove(); }"""))
        self.save.on_click(self._on_save)
        self.last_args: Optional[list] = None
        self.last_settings = None
        self.timings: list = []  # seconds per update (compute + push), for the benchmark

    # ------------------------------------------------------------ plumbing
    def command_box(self):
        return column(self.command, row(self.copy, self.save, self.saved))

    def request(self, attr, old, new):
        """Mark the view dirty; one update runs at the next tick with the latest values."""
        if not self._scheduled:
            self._scheduled = True
            self.doc.add_next_tick_callback(self._tick)

    def _tick(self):
        self._scheduled = False
        self.update()

    def message(self, text: str, bad: bool = False) -> None:
        self.status.text = html.escape(text)
        self.status.styles = BAD_STYLES if bad else OK_STYLES

    def update(self) -> bool:
        """Validate, compute and draw; **returns** whether the page now shows the settings."""
        t0 = time.perf_counter()
        try:
            settings = self.read()
        except InputError as e:
            self.message(str(e), bad=True)
            return False
        key = self.key(settings)
        warm = self.ctx.warm
        if not warm.ready(key):
            if warm.error(key):
                self.message(f"cannot compile {warm.label(key)}: {warm.error(key)}", bad=True)
                return False
            warm.want(key)
            done, total = warm.progress()
            self.message(f"compiling {warm.label(key)} (once per session; {done}/{total} kernels ready)…")
            if not self._waiting:
                self._waiting = True
                self.doc.add_timeout_callback(self._retry, 300)
            return False
        try:
            result = self.compute(settings)
            self.draw(settings, result)
        except InputError as e:
            self.message(str(e), bad=True)
            return False
        except Exception as e:  # shown in the page; the traceback only with --debug
            if self.ctx.debug:
                traceback.print_exc()
            self.message(f"error: {type(e).__name__}: {e}", bad=True)
            return False
        self.last_settings = settings
        self.last_args = self.args(settings)
        cmd = command_line(self.last_args)
        self.command.value = cmd
        self.timings.append(time.perf_counter() - t0)
        return True

    def _retry(self):
        self._waiting = False
        self.update()

    # ---------------------------------------------------------------- save
    def _on_save(self, event=None):
        if self.last_args is None:
            self.saved.text = "nothing to save yet"
            return
        reason = self.save_refusal(self.last_settings)
        if reason:
            self.saved.text = f"<span style='{BAD_STYLE}'>{html.escape(reason)}</span>"
            return
        out = os.path.join(self.ctx.out_dir, f"explore-{time.strftime('%Y%m%d-%H%M%S')}-{self.prefix}")
        args = list(self.last_args) + ["--out", out]
        self.saved.text = "saving (runs simulate.py)…"
        self.save.disabled = True
        future = self.ctx.executor.submit(self.ctx.run_simulate, args)
        future.add_done_callback(lambda f: self.doc.add_next_tick_callback(lambda: self._saved(f, args)))

    def _saved(self, future, args):
        self.save.disabled = False
        err = future.exception()
        if err is None and future.result() == 0:
            out = args[args.index("--out") + 1]
            files = ", ".join(f for f in ("summary.json", "trajectory.npz", "figure.png")
                              if os.path.exists(os.path.join(out, f)))
            self.saved.text = f"wrote {html.escape(out)}/ ({files})"
            self.saved.tags = [out]
        else:
            why = str(err) if err is not None else f"simulate.py exited with code {future.result()}"
            self.saved.text = f"<span style='{BAD_STYLE}'>save failed: {html.escape(why)}</span>"

    def save_refusal(self, settings) -> Optional[str]:
        """Why the current settings cannot be saved through simulate.py (None when they can)."""
        return None

    # ------------------------------------------------------ for subclasses
    def read(self):
        raise NotImplementedError

    def key(self, settings):
        raise NotImplementedError

    def compute(self, settings):
        raise NotImplementedError

    def draw(self, settings, result) -> None:
        raise NotImplementedError

    def args(self, settings) -> list:
        raise NotImplementedError
