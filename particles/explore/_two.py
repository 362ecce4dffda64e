"""The two-particle view: the γ-plane, GD (and the flow) over it, losses, margins and theory.

Sliders set α, p₁, η (log scale) and the number of steps; a click on the plane sets the
start γ₀. Drawn: the cross-entropy contours and the 0-1 loss of the γ-plane
(`analysis.landscape`; white is the wedge where both tokens are right), the GD path and the
gradient flow's, the loss and 0-1 loss with spikes marked, the margins over log time with
the paper's predictions (first-step margins, the log-t asymptotes), the stability ratio
η λ_max(S_t) / 2 along the run, and a line of numbers.
"""

from __future__ import annotations

import numpy as np
from bokeh.events import Tap
from bokeh.layouts import column, row
from bokeh.models import (Button, CheckboxGroup, ColumnDataSource, Div, HoverTool, LinearColorMapper,
                          Range1d, Slider, Span, TextInput)
from bokeh.palettes import Greys256, viridis
from bokeh.plotting import figure
from bokeh.plotting.contour import contour_data

import particles as pt

from . import _compute as c
from ._inputs import LR_RANGE, TWO_STEPS_MAX, TwoSettings, two_command, two_settings
from ._view import BLUE, GREEN, ORANGE, TOOLS, View, from_log, log_slider, loss_figure, numbers_panel, show_numbers

LEVELS = 12
DOTS = 300  # about this many log-spaced steps get a dot on the path and a point on the margin curves
FLOW_KEY = ("flow",)


def _fmt(x, digits: int = 4) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _step(x) -> str:
    return "never" if int(x) < 0 else f"step {int(x)}"


class TwoView(View):
    """The two-particle view of one browser session (see the module docstring)."""

    prefix = "two"

    def __init__(self, ctx, doc, defaults: TwoSettings | None = None):
        super().__init__(ctx, doc)
        d = defaults or TwoSettings()
        self.corr = Slider(start=-1, end=1, step=0.01, value=d.corr, title="α = ⟨e₁, e₂⟩ (input correlation)",
                           name="two_corr", width=280, css_classes=["pe-two-corr"])
        self.p1 = Slider(start=0.01, end=0.99, step=0.01, value=d.p1, title="p₁ (frequency of token 1; p₂ = 1 − p₁)",
                         name="two_p1", width=280, css_classes=["pe-two-p1"])
        self.lr = log_slider("two_lr", "η (step size, log scale)", *LR_RANGE, d.lr)
        self.steps = log_slider("two_steps", "steps (log scale)", 1, TWO_STEPS_MAX, d.steps, integer=True)
        self.gamma0 = TextInput(value=f"{d.gamma0[0]:g}, {d.gamma0[1]:g}", title="γ₀ = start (or click the plane)",
                                name="two_gamma0", width=280, css_classes=["pe-two-gamma0"])
        self.reset = Button(label="start from γ₀ = 0 (W = 0)", name="two_reset", width=200, css_classes=["pe-two-reset"])
        self.reset.on_click(lambda: setattr(self.gamma0, "value", "0, 0"))
        self.flow = CheckboxGroup(labels=["gradient flow (dashed)"], active=[0] if d.flow else [], name="two_flow",
                                  css_classes=["pe-two-flow"])
        self.numbers_fig, self.numbers = numbers_panel("two_numbers_panel", 950, 6, 180)
        self._plane_key = None  # (α, p₁, window) of the landscape on the page
        for w in (self.corr, self.p1, self.lr, self.steps, self.gamma0):
            w.on_change("value", self.request)
        self.flow.on_change("active", self.request)
        self._plane()
        self._curves()
        intro = Div(text="<b>Two particles</b> (paper §3.3): N = M = d = 2, e₁ = (1, 0), e₂ = (α, √(1−α²)), "
                         "U = I, f*(x) = x. γ = Wᵀ(u₁ − u₂): m₁ = γ·e₁, m₂ = −γ·e₂.", width=280)
        controls = column(intro, self.corr, self.p1, self.lr, self.steps, self.gamma0, self.reset, self.flow, width=300)
        plots = column(self.numbers_fig, row(self.plane, column(self.loss_fig, self.margin_fig, self.ratio_fig)))
        self.layout = column(self.status, row(controls, plots), self.command_box(), name="two_view")

    # ------------------------------------------------------------ figures
    def _plane(self):
        p = figure(width=500, height=500, title="γ-plane: CE contours; 0-1 loss shaded (white: both tokens right)",
                   x_axis_label="γ₁", y_axis_label="γ₂", tools=TOOLS, x_range=Range1d(-1, 1), y_range=Range1d(-1, 1),
                   name="two_plane", css_classes=["pe-two-plane"])
        self.image = ColumnDataSource(dict(image=[np.zeros((2, 2))], x=[-1.0], y=[-1.0], dw=[2.0], dh=[2.0]),
                                      name="two_image")
        p.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.image, level="image",
                color_mapper=LinearColorMapper(palette=list(reversed(Greys256)), low=0.0, high=1.6))
        g = np.linspace(-1, 1, 3)
        self.contours = p.contour(g, g, np.add.outer(g, g) ** 2, np.linspace(0.5, 3.5, LEVELS),
                                  line_color=viridis(LEVELS), line_width=1.0)
        self.gd = ColumnDataSource(dict(x=[], y=[]), name="two_gd")
        self.dots = ColumnDataSource(dict(x=[], y=[], step=[], m1=[], m2=[]), name="two_gd_dots")
        self.flow_path = ColumnDataSource(dict(x=[], y=[], t=[]), name="two_flow_path")
        self.start = ColumnDataSource(dict(x=[0.0], y=[0.0]), name="two_start")
        p.line("x", "y", source=self.flow_path, color=GREEN, line_dash="dashed", line_width=2, legend_label="flow")
        p.line("x", "y", source=self.gd, color=ORANGE, line_width=1.2, legend_label="GD")
        dots = p.scatter("x", "y", source=self.dots, color=ORANGE, size=4)
        p.scatter("x", "y", source=self.start, marker="star", size=14, color="black", legend_label="γ₀")
        p.add_tools(HoverTool(renderers=[dots], tooltips=[("step", "@step"), ("γ", "(@x{0.000}, @y{0.000})"),
                                                          ("m₁, m₂", "@m1{0.000}, @m2{0.000}")]))
        p.legend.location = "top_left"
        p.legend.background_fill_alpha = 0.7
        p.on_event(Tap, self._on_tap)
        self.plane = p

    def _curves(self):
        self.series = ColumnDataSource(dict(step=[], loss=[], zero_one=[], ratio=[]), name="two_series")
        self.spikes = ColumnDataSource(dict(step=[], loss=[]), name="two_spikes")
        self.loss_fig = loss_figure(self.series, self.spikes, width=460, height=230, name="two_loss")

        self.margins = ColumnDataSource(dict(t=[], m1=[], m2=[]), name="two_margins")
        self.flow_margins = ColumnDataSource(dict(t=[], m1=[], m2=[]), name="two_flow_margins")
        self.asymptote = ColumnDataSource(dict(t=[], a1=[], a2=[]), name="two_asymptote")
        self.first = ColumnDataSource(dict(t=[], m=[]), name="two_first_step")
        f = figure(width=460, height=230, x_axis_type="log", title="margins over log time; theory dotted, ■ first step",
                   x_axis_label="step (flow: t/η)", tools=TOOLS, name="two_margin_fig")
        f.add_layout(Span(location=0, dimension="width", line_color="#999", line_width=1))
        for k, col in ((1, BLUE), (2, ORANGE)):
            f.line("t", f"m{k}", source=self.margins, color=col, line_width=1.6, legend_label=f"m{k}")
            f.line("t", f"m{k}", source=self.flow_margins, color=col, line_dash="dashed", line_width=1.2)
            f.line("t", f"a{k}", source=self.asymptote, color=col, line_dash="dotted", line_width=1.5)
        f.scatter("t", "m", source=self.first, marker="square", size=8, color="black", legend_label="η(p_x − α p_other)")
        f.legend.location = "bottom_right"
        f.legend.label_text_font_size = "8pt"
        f.legend.background_fill_alpha = 0.6
        self.margin_fig = f

        f = figure(width=460, height=190, y_axis_type="log", title="stability ratio η·λ_max(S_t)/2 (GD unstable above 1)",
                   x_axis_label="step", tools=TOOLS, name="two_ratio")
        f.add_layout(Span(location=1.0, dimension="width", line_color=ORANGE, line_dash="dashed", line_width=1.5))
        f.line("step", "ratio", source=self.series, color=BLUE, line_width=1.5)
        self.ratio_fig = f

    # ------------------------------------------------------------- events
    def _on_tap(self, event):
        if event.x is None or event.y is None:
            return
        self.gamma0.value = f"{round(float(event.x), 3):g}, {round(float(event.y), 3):g}"

    # ------------------------------------------------------- View methods
    def read(self) -> TwoSettings:
        return two_settings(self.corr.value, self.p1.value, from_log(self.lr.value),
                            from_log(self.steps.value, integer=True), self.gamma0.value, 0 in self.flow.active)

    def key(self, s: TwoSettings):
        return ("two", c.bucket(s.steps, c.TWO_BUCKETS))

    def compute(self, s: TwoSettings):
        warm = self.ctx.warm
        flow_ready = warm.ready(FLOW_KEY)
        if s.flow and not flow_ready:
            warm.want(FLOW_KEY)
            if not self._waiting:
                self._waiting = True
                self.doc.add_timeout_callback(self._retry, 500)
        return c.run_two(s, with_flow=s.flow and flow_ready)

    def args(self, s: TwoSettings) -> list:
        return two_command(s)

    def draw(self, s: TwoSettings, r: c.TwoResult) -> None:
        flow = r.flow
        paths = [r.gamma, None if flow is None else flow["gamma"]]
        # The landscape depends on α, p₁ and the window only: redrawn when one of them changes
        # (the window is snapped, so most moves of η, the steps or γ₀ keep it).
        extent = c.window(paths)
        if (s.corr, s.p1, extent) != self._plane_key:
            self._plane_key = (s.corr, s.p1, extent)
            g1, g2, ce, zo = c.landscape(r.problem, extent)
            x0, x1, y0, y1 = extent
            self.image.data = dict(image=[zo], x=[x0], y=[y0], dw=[x1 - x0], dh=[y1 - y0])
            lo = max(float(np.nanmin(ce)), 1e-3)
            levels = np.geomspace(lo * 1.05, float(np.nanmax(ce)) * 0.95, LEVELS)
            self.contours.set_data(contour_data(g1, g2, ce, levels, want_fill=False))
            self.contours.levels = list(levels)
            self.plane.x_range.start, self.plane.x_range.end = x0, x1
            self.plane.y_range.start, self.plane.y_range.end = y0, y1
        m = r.margins
        self.gd.data = dict(x=r.gamma[:, 0], y=r.gamma[:, 1])
        # Dots (and the margins over log time) at log-spaced steps: every step of a long run
        # would pile up at its end and cost more to send and draw than to compute.
        few = pt.log_steps(s.steps, DOTS)
        self.dots.data = dict(x=r.gamma[few, 0], y=r.gamma[few, 1], step=r.steps[few], m1=m[few, 0], m2=m[few, 1])
        self.start.data = dict(x=[s.gamma0[0]], y=[s.gamma0[1]])
        with np.errstate(all="ignore"):
            loss = np.where(r.loss > 0, r.loss, np.nan)
        self.series.data = dict(step=r.steps, loss=loss, zero_one=r.zero_one, ratio=r.ratio)
        peaks = np.array([sp["peak_step"] for sp in r.spikes], np.int64)
        self.spikes.data = dict(step=peaks, loss=r.loss[peaks] if peaks.size else np.zeros(0))
        later = few[1:]
        self.margins.data = dict(t=r.steps[later], m1=m[later, 0], m2=m[later, 1])
        if flow is not None:
            keep = flow["t"] > 0
            self.flow_path.data = dict(x=flow["gamma"][:, 0], y=flow["gamma"][:, 1], t=flow["t"])
            self.flow_margins.data = dict(t=flow["t"][keep] / s.lr, m1=flow["margins"][keep, 0],
                                          m2=flow["margins"][keep, 1])
        else:
            self.flow_path.data = dict(x=[], y=[], t=[])
            self.flow_margins.data = dict(t=[], m1=[], m2=[])
        th = r.theory
        if "asymptote" in th:
            a = th["asymptote"]
            self.asymptote.data = dict(t=th["asymptote_t"], a1=a[:, 0], a2=a[:, 1])
        else:
            self.asymptote.data = dict(t=[], a1=[], a2=[])
        self.first.data = dict(t=[1.0, 1.0], m=list(th["first_step"])) if th["from_zero"] else dict(t=[], m=[])
        pairs, self.values.tags = self._numbers(s, r)
        show_numbers(self.numbers, pairs)
        note = r.status or (flow or {}).get("message", "")
        if s.flow and flow is None:
            note = (note + "; " if note else "") + "gradient flow: compiling (once per session)…"
        self.message(note or f"ready: {s.steps} GD steps", bad=bool(r.status))

    def _numbers(self, s: TwoSettings, r: c.TwoResult):
        ev, th = r.events, r.theory
        spikes = r.spikes
        big = max(spikes, key=lambda sp: sp["height"]) if spikes else None
        p2 = 1 - s.p1
        rare = 1 if s.p1 >= p2 else 0
        forgot = bool(r.margins[1, rare] < 0) if len(r.margins) > 1 else None
        ratio0, ratio1 = float(r.ratio[0]), float(r.ratio[-1])
        parts = [
            ("first full accuracy", _step(ev["first_full_accuracy"])
             + (f" (for good from {_step(ev['full_accuracy_from'])})"
                if int(ev["full_accuracy_from"]) != int(ev["first_full_accuracy"]) else "")),
            ("loss spikes", f"{int(ev['loss_spikes'])}"
             + (f" (largest +{big['height']:.3g}, peak at step {big['peak_step']})" if big else "")),
            ("margin oscillations", f"{tuple(int(x) for x in ev['oscillations'])}"),
            ("stability ratio ηλ_max/2", f"{_fmt(ratio0, 3)} at start → {_fmt(ratio1, 3)} at step {s.steps}"
                                         f" (2/λ_max at W = 0: {_fmt(th['limit'], 4)})"),
        ]
        if th["from_zero"]:
            crit = f"α = {s.corr:g} {'>' if th['forgets'] else '≤'} p_rare/p_freq = {min(s.p1, p2) / max(s.p1, p2):.3g}"
            sim = "" if forgot is None else f"; simulated: {'yes' if forgot else 'no'}"
            parts.append(("rare token forgotten at step 1",
                          f"predicted {'yes' if th['forgets'] else 'no'} ({crit}){sim}"))
        parts.append(("wedge", f"opening arccos α = {th['wedge_deg']:.1f}°; the first step raises the loss for "
                               f"η > {_fmt(th['spike_lr'], 4)}"))
        tags = dict(first_full_accuracy=int(ev["first_full_accuracy"]), full_accuracy_from=int(ev["full_accuracy_from"]),
                    loss_spikes=int(ev["loss_spikes"]), oscillations=[int(x) for x in ev["oscillations"]],
                    ratio_start=ratio0, ratio_end=ratio1, corr=s.corr, p1=s.p1, lr=s.lr, steps=s.steps,
                    gamma0=list(s.gamma0), forgets=th["forgets"], limit=th["limit"])
        return parts, [tags]
