"""The standard figure of a set of runs, its theory curves, and the time axis they share."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from particles import theory as th

from ._compare import regimes
from ._gamma import gamma_of_margins, gamma_of_scores, plot_landscape
from ._plots import OKABE_ITO, _annotate_bad, plot_losses, plot_margins
from ._rows import finite_rows

__all__ = ["label_runs", "theory_curves", "figure_for_run", "is_planar", "FLOW_TIME"]

FLOW_TIME = "time t (GD: t = η·step)"
"""The x label when GD runs are drawn beside a gradient flow."""


def label_runs(runs: dict, run_lr: dict) -> dict:
    """{legend label: trajectory} for plotting; beside a flow, GD runs move to flow time.

    GD with step η follows the gradient flow at time t = η·k, so next to a flow a GD run is
    drawn at t = η·step (a view of the same rows; the x label says so).

    **Arguments:** `runs` {name: Trajectory}; `run_lr` {name: η, None for the flow}.

    **Returns:** {label: Trajectory}.

    >>> import particles as pt
    >>> problem = pt.two_particles(0.3, 0.7)
    >>> views = label_runs({"gd": pt.gd(problem, 2.0, 4), "flow": pt.flow(problem, 8.0)}, {"gd": 2.0, "flow": None})
    >>> list(views), views["gd η=2"].t.tolist()
    (['gd η=2', 'gradient flow'], [0.0, 2.0, 4.0, 6.0, 8.0])
    """
    with_flow = any(lr is None for lr in run_lr.values())
    out = {}
    for name, traj in runs.items():
        lr = run_lr[name]
        if lr is None:
            out["gradient flow"] = traj
        elif with_flow:
            out[f"{traj.integrator} η={lr:g}"] = dataclasses.replace(traj, t=np.asarray(traj.t) * lr, steps=None)
        else:
            out[f"{traj.integrator} η={lr:g}"] = traj
    return out


def theory_curves(problem, runs: dict, run_lr: dict) -> Optional[dict]:
    """Dashed theory curves for the margin panels, {label: (t, values (T, N))}, in the time
    coordinates of [`label_runs`][] (flow time when a flow is among the runs, else steps).

    - orthogonal: the exact flow margins (Lambert W);
    - two particles: the asymptote m_x ≈ log(2(1 − α) p_x t) (flow time; log(2(1 − α) η p_x k)
      at step k);
    - a finite cross-entropy minimiser (d < N): its margins, where GD with a small step
      and the flow come to rest.

    **Returns:** {label: (t (T,), values (T, N))}, or None when no theory applies.

    >>> import particles as pt
    >>> problem = pt.orthogonal([0.5, 0.5])
    >>> list(theory_curves(problem, {"flow": pt.flow(problem, 10.0)}, {"flow": None}))
    ['flow theory (Lambert W)']
    """
    found = regimes(problem)
    flow = next((t for n, t in runs.items() if run_lr[n] is None), None)
    ref_name = next(iter(runs))
    ref = runs[ref_name]
    lr = run_lr[ref_name] or 1.0
    t = np.asarray(flow.t if flow is not None else ref.t, np.float64)
    p = np.asarray(problem.p, np.float64)
    with np.errstate(all="ignore"):
        if "orthogonal" in found:
            tt = t if flow is not None else t * lr
            m = np.asarray(th.orthogonal_flow_margin(tt[:, None], p[None, :], problem.M))
            return {"flow theory (Lambert W)": (t, m)} if np.all(np.isfinite(m)) else None
        if "two_particles" in found:
            corr = float(np.asarray(problem.G_E)[0, 1])
            tt = t[t > 0]
            eta = 1.0 if flow is not None else lr
            return {"asymptote log(2(1−α)η p t)": (tt, np.asarray(th.two_particles_margin_asymptote(tt, eta, corr, p[0])))}
        if "underparameterized" in found and problem.N * problem.M <= 4096:
            try:
                ce = th.ce_minimizer(problem)
            except ValueError:
                return None
            m = np.asarray(_margins(np.asarray(ce.scores), np.asarray(problem.Y)))
            ends = np.array([t[t > 0][0] if np.any(t > 0) else t[0], t[-1]])  # drawable on a log axis
            return {"W_CE (cross-entropy minimiser)": (ends, np.repeat(m[None], 2, axis=0))}
    return None


def _margins(S, Y):
    f = np.argmax(Y, axis=-1)
    own = np.take_along_axis(S, f[:, None], axis=-1)[:, 0]
    other = np.where(np.eye(S.shape[-1], dtype=bool)[f], -np.inf, S).max(-1)
    return own - other


def is_planar(problem) -> bool:
    """True for two classes whose inputs span at most a plane (the γ-plane exists).

    **Returns:** a bool. `is_planar(particles.two_particles(0.5, 0.7))` is True.
    """
    if problem.M != 2:
        return False
    if problem.E is not None:
        return problem.E.shape[1] == 2
    w = np.linalg.eigvalsh(np.asarray(problem.G_E, np.float64))
    return int(np.sum(w > 1e-10 * max(1.0, w.max()))) <= 2


def figure_for_run(problem, trajectories: dict, theory: Optional[dict] = None, *, extent=None, title: str = ""):
    """The standard figure of runs: each run's margins (log time, theory dashed), the losses in
    linear and log time with spikes marked, and the γ-plane when M = d = 2.

    Each run gets its own margin panel, so that a run past the edge of stability never hides
    the others; with many tokens the panels show quantiles and representative tokens.

    **Arguments:**

    - `problem`: the Problem that was run.
    - `trajectories`: {label: unbatched Trajectory} (e.g. from [`label_runs`][]).
    - `theory`: {label: (t, values)} overlays for the margin panels (dashed).
    - `extent`: the γ-plane window; default: around every path, at least [−1, 1]².
    - `title`: the figure's title.

    **Returns:** a matplotlib Figure (two rows of panels).

    >>> import particles as pt
    >>> problem = pt.two_particles(0.95, 0.75)
    >>> fig = figure_for_run(problem, {"gd η=10": pt.gd(problem, 10.0, 35)})
    >>> [ax.get_title() for ax in fig.axes if ax.get_title()][:2]
    ['gd η=10: margins', 'losses (spikes: ▼)']
    """
    from matplotlib.figure import Figure

    if not trajectories:
        raise ValueError("trajectories={} is not allowed: give at least one {label: Trajectory}.")
    planar = is_planar(problem)
    runs = list(trajectories.items())
    ncols = max(len(runs), 3 if planar else 2)
    fig = Figure(figsize=(3.9 * ncols, 7.4))
    axes = fig.subplots(2, ncols, gridspec_kw=dict(left=0.06, right=0.96, bottom=0.08, top=0.9, wspace=0.55,
                                                    hspace=0.42), squeeze=False)
    flow_time = any(t.steps is None for _, t in runs) and any("η" in k for k, _ in runs)
    several = len(runs) > 1
    for i, (label, traj) in enumerate(runs):
        plot_margins(axes[0, i], traj, theory=theory, logx=True, p=np.asarray(problem.p))
        axes[0, i].set_title(f"{label}: margins", fontsize=9)
        color = OKABE_ITO[i % len(OKABE_ITO)]
        name = label if several else ""
        plot_losses(axes[1, 0], traj, label=name, color=color)
        plot_losses(axes[1, 1], traj, label=name, color=color, logx=True)
    for j in range(len(runs), ncols):
        axes[0, j].axis("off")
    axes[1, 0].set_title("losses (spikes: ▼)", fontsize=9)
    axes[1, 1].set_title("losses, log time", fontsize=9)
    if flow_time:
        for ax in list(axes[0, : len(runs)]) + [axes[1, 0], axes[1, 1]]:
            ax.set_xlabel(FLOW_TIME + (" (log scale)" if ax.get_xscale() == "log" else ""))
    if planar:
        _gamma_panel(axes[1, 2], problem, trajectories, extent)
    for j in range(3 if planar else 2, ncols):
        axes[1, j].axis("off")
    if title:
        fig.suptitle(title)
    return fig


def _gamma_panel(ax, problem, trajectories, extent):
    paths = []
    for label, traj in trajectories.items():
        n, _ = finite_rows(traj, "plot", warn=False)
        scores = getattr(traj, "scores", None)
        gam = (gamma_of_scores(problem, np.asarray(scores)[:n]) if scores is not None
               else gamma_of_margins(problem, np.asarray(traj.margins)[:n]))
        paths.append((label, gam))
    if extent is None:
        pts = np.concatenate([g for _, g in paths] + [np.zeros((1, 2))])
        lo, hi = np.minimum(pts.min(0), -1.0), np.maximum(pts.max(0), 1.0)
        pad = 0.08 * (hi - lo)
        extent = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    plot_landscape(ax, problem, extent=extent, trajectories=paths)
    for label, traj in trajectories.items():  # a diverged run's path ends where it stopped: say so
        _annotate_bad(ax, finite_rows(traj, "plot", warn=False)[1], None, label)
    ax.set_title("γ-plane: CE contours over 0-1 loss", fontsize=9)
