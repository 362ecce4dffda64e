"""The N-particle view: equicorrelated or random-sphere memories, every margin over time.

Sliders set N, M, d, the correlation (equicorrelated), the Zipf exponent, η (log scale) and
the steps; the sphere geometry takes a seed. Drawn: the margin of every token over log time
(coloured by frequency rank), the loss and 0-1 loss with spikes, a line of numbers, and the
table of `analysis.compare` for the regime. The table runs on a worker thread: for small
systems it follows every move; for large ones (its max-margin and CE-minimizer solvers take
minutes at N = M = 64) it waits for its button.
"""

from __future__ import annotations

import html

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (Button, ColumnDataSource, Div, NumericInput, Select,
                          Slider, Span)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

import particles as pt

from . import _compute as c
from . import _compute_many as cm
from ._inputs import D_MAX, LR_RANGE, M_MAX, MANY_STEPS_MAX, N_MAX, SEED_MAX, ManySettings, many_command, many_settings
from ._view import TOOLS, View, from_log, log_slider, loss_figure, numbers_panel, show_numbers

AUTO_TABLE = 256
MARGIN_ROWS = 300  # about this many log-spaced rows per margin curve  # N·M up to which the comparison table follows every move


class ManyView(View):
    """The N-particle view of one browser session (see the module docstring)."""

    prefix = "many"

    def __init__(self, ctx, doc, defaults: ManySettings | None = None):
        super().__init__(ctx, doc)
        d = defaults or ManySettings()
        self.geometry = Select(title="embeddings", value=d.geometry, options=[
            ("sphere", "random unit sphere (paper §4.6)"), ("equicorrelated", "equicorrelated inputs, orthonormal outputs")],
            name="many_geometry", css_classes=["pe-many-geometry"], width=280)
        self.n = Slider(start=2, end=N_MAX, step=1, value=d.n, title="N (inputs)", name="many_n", css_classes=["pe-many-n"], width=280)
        self.m = Slider(start=2, end=M_MAX, step=1, value=d.m, title="M (classes; f*(x) = x mod M)", name="many_m", css_classes=["pe-many-m"],
                        width=280)
        self.d = Slider(start=1, end=D_MAX, step=1, value=d.d, title="d (embedding dimension)", name="many_d", css_classes=["pe-many-d"], width=280)
        self.corr = Slider(start=-1, end=1, step=0.01, value=d.corr, title="α (pairwise correlation, equicorrelated)",
                           name="many_corr", css_classes=["pe-many-corr"], width=280)
        self.zipf = Slider(start=0, end=3, step=0.05, value=d.zipf, title="Zipf exponent a: p(x) ∝ x^(−a)",
                           name="many_zipf", css_classes=["pe-many-zipf"], width=280)
        self.lr = log_slider("many_lr", "η (step size, log scale)", *LR_RANGE, d.lr)
        self.steps = log_slider("many_steps", "steps (log scale)", 1, MANY_STEPS_MAX, d.steps, integer=True)
        self.seed = NumericInput(value=d.seed, low=0, high=SEED_MAX, mode="int", title="seed (sphere embeddings)",
                                 name="many_seed", css_classes=["pe-many-seed"], width=280)
        for w in (self.geometry, self.n, self.m, self.d, self.corr, self.zipf, self.lr, self.steps, self.seed):
            w.on_change("value", self.request)
        self.numbers_fig, self.numbers = numbers_panel("many_numbers_panel", 950, 4, 140)
        self.table = Div(text="", name="many_table", width=950)
        self.table_button = Button(label="compute the theory table", name="many_table_button", width=220, css_classes=["pe-many-table-button"])
        self.table_button.on_click(self._ask_table)
        self._token = 0
        self._figures()
        intro = Div(text="<b>N particles</b>: one particle per input token (its score row), coupled through "
                         "G_E = EEᵀ and G_U = UUᵀ. d < N: the memory is too small (underparameterized).", width=280)
        controls = column(intro, self.geometry, self.n, self.m, self.d, self.corr, self.zipf, self.lr, self.steps,
                          self.seed, width=300)
        plots = column(self.numbers_fig, row(self.margin_fig, self.loss_fig), row(self.table_button), self.table)
        self.layout = column(self.status, row(controls, plots), self.command_box(), name="many_view")

    def _figures(self):
        self.margins = ColumnDataSource(dict(xs=[], ys=[], color=[], token=[], p=[]), name="many_margins")
        f = figure(width=500, height=380, x_axis_type="log", x_axis_label="step (log scale)", y_axis_label="margin m(x)",
                   title="margins of every token (dark: frequent, light: rare)", tools=TOOLS, name="many_margin_fig")
        f.add_layout(Span(location=0, dimension="width", line_color="#999", line_width=1))
        f.multi_line("xs", "ys", source=self.margins, color="color", line_width=1.3, alpha=0.9)
        self.margin_fig = f
        self.series = ColumnDataSource(dict(step=[], loss=[], zero_one=[]), name="many_series")
        self.spikes = ColumnDataSource(dict(step=[], loss=[]), name="many_spikes")
        self.loss_fig = loss_figure(self.series, self.spikes, width=440, height=380,
                                    y_axis_label="cross-entropy loss", name="many_loss")

    # ------------------------------------------------------- View methods
    def read(self) -> ManySettings:
        sphere = self.geometry.value == "sphere"
        self.corr.disabled, self.seed.disabled = sphere, not sphere
        return many_settings(self.geometry.value, self.n.value, self.m.value, self.d.value, self.corr.value,
                             self.zipf.value, from_log(self.lr.value), from_log(self.steps.value, integer=True),
                             self.seed.value if self.seed.value is not None else 0)

    def key(self, s: ManySettings):
        return ("many", c.pad_size(max(s.n, s.m)), c.bucket(s.steps, c.MANY_BUCKETS))

    def compute(self, s: ManySettings):
        return cm.run_many(s)

    def args(self, s: ManySettings) -> list:
        return many_command(s)

    def draw(self, s: ManySettings, r: cm.ManyResult) -> None:
        # Log-spaced rows on the log-time axis: N lines of every step would cost more to send
        # and draw than to compute (64 x 5,000 points), for no visible difference.
        rows = pt.log_steps(s.steps, MARGIN_ROWS)[1:]
        order = np.argsort(np.argsort(-r.p, kind="stable"), kind="stable")  # frequency rank of each token
        colors = [Viridis256[int(k * 220 / max(s.n - 1, 1))] for k in order]
        t = r.steps[rows]
        self.margins.data = dict(xs=[t] * s.n, ys=[r.margins[rows, x] for x in range(s.n)], color=colors,
                                 token=list(range(s.n)), p=list(r.p))
        with np.errstate(all="ignore"):
            loss = np.where(r.loss > 0, r.loss, np.nan)
        self.series.data = dict(step=r.steps, loss=loss, zero_one=r.zero_one)
        peaks = np.array([sp["peak_step"] for sp in r.spikes], np.int64)
        self.spikes.data = dict(step=peaks, loss=r.loss[peaks] if peaks.size else np.zeros(0))
        ev = r.events
        final = r.margins[-1]
        show_numbers(self.numbers, [
            ("first full accuracy", "never" if ev["first_full_accuracy"] < 0 else "step %d" % ev["first_full_accuracy"]),
            ("loss spikes", f"{int(ev['loss_spikes'])}"),
            ("margin oscillations", f"{int(np.sum(ev['oscillations']))} in all, "
                                    f"{int(np.sum(ev['oscillations'] > 0))} of {s.n} tokens"),
            ("final", f"loss {r.loss[-1]:.4g}, 0-1 loss {r.zero_one[-1]:.4g}, smallest margin {np.min(final):.4g}"),
        ])
        self.values.tags = [dict(first_full_accuracy=int(ev["first_full_accuracy"]), loss_spikes=int(ev["loss_spikes"]),
                                  oscillations=[int(x) for x in ev["oscillations"]], n=s.n, m=s.m, d=s.d, lr=s.lr,
                                  steps=s.steps, geometry=s.geometry, seed=s.seed, corr=s.corr, zipf=s.zipf)]
        self.message(r.status or f"ready: N={s.n}, M={s.m}, d={s.d}; {s.steps} GD steps",
                     bad=bool(r.status))
        self._token += 1
        self._result = r
        if s.n * s.m <= AUTO_TABLE:
            self._ask_table()
        else:
            self.table.text = ("<i>theory table: press the button (for N·M > %d its solvers take from seconds to "
                               "minutes)</i>" % AUTO_TABLE)

    # --------------------------------------------------------- the table
    def _ask_table(self, event=None):
        r, token = getattr(self, "_result", None), self._token
        if r is None:
            return
        self.table.text = "<i>computing the theory table…</i>"
        future = self.ctx.tables.submit(cm.comparison, r)
        future.add_done_callback(lambda f: self.doc.add_next_tick_callback(lambda: self._show_table(f, token)))

    def _show_table(self, future, token):
        if token != self._token:
            return  # the settings moved on; a newer table is on its way (or waits for its button)
        err = future.exception()
        if err is not None:
            self.table.text = f"<span style='color:#b00020'>theory table failed: {html.escape(str(err))}</span>"
            return
        comparison, lam0, ratio0 = future.result()
        self.table.text = (f"<div>λ_max at the start {lam0:.4g}: stability limit 2/λ_max = {2 / lam0:.4g}, "
                           f"ratio ηλ_max/2 = {ratio0:.3g}</div><pre style='font-size:11px'>"
                           f"{html.escape(comparison.text())}</pre>")
        self.table.tags = [dict(regimes=list(comparison.regimes), rows=len(comparison.rows))]
