"""particles.analysis: theory against simulation, detectors of events in runs, and plots.

- Detectors read one [`particles.Trajectory`][]: [`loss_spikes`][], [`sign_flips`][],
  [`oscillations`][], [`first_full_accuracy`][], [`detect_cycle`][], [`log_slope`][],
  [`summarize`][].
- [`compare`][] puts the predictions of `particles.theory` that apply to a problem next to
  a run, as a [`Comparison`][] table (text, markdown or JSON).
- Plots (matplotlib): [`plot_margins`][], [`plot_losses`][], [`plot_landscape`][],
  [`plot_sharpness`][], [`figure_for_run`][].
"""

from ._animate import animate as animate
from ._compare import compare as compare, describe_regime as describe_regime, regimes as regimes
from ._detectors import (
    Cycle as Cycle,
    NonFiniteWarning as NonFiniteWarning,
    Spike as Spike,
    detect_cycle as detect_cycle,
    events as events,
    first_full_accuracy as first_full_accuracy,
    full_accuracy_from as full_accuracy_from,
    log_slope as log_slope,
    loss_spikes as loss_spikes,
    oscillations as oscillations,
    sign_flips as sign_flips,
    summarize as summarize,
)
from ._gamma import (
    gamma_of_margins as gamma_of_margins,
    gamma_of_scores as gamma_of_scores,
    landscape as landscape,
    plot_landscape as plot_landscape,
)
from ._plots import (
    OKABE_ITO as OKABE_ITO,
    plot_losses as plot_losses,
    plot_margins as plot_margins,
    plot_sharpness as plot_sharpness,
    representative_tokens as representative_tokens,
)
from ._phase import phase_diagrams as phase_diagrams
from ._table import Comparison as Comparison, Row as Row
from ._transformer import figures as transformer_figures, plot_runs as plot_transformer_runs
from ._transformer_report import report_section as transformer_report_section
from ._figure import (
    FLOW_TIME as FLOW_TIME,
    figure_for_run as figure_for_run,
    is_planar as is_planar,
    label_runs as label_runs,
    theory_curves as theory_curves,
)
