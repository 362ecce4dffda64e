"""Animations of runs: the particles moving, with the theory drawn beside them."""

from __future__ import annotations

import os
import shutil
from typing import Optional

import numpy as np

from ._gamma import gamma_of_margins, gamma_of_scores
from ._rows import finite_rows, times
from ._figure import _gamma_panel, is_planar
from ._plots import OKABE_ITO, plot_margins

__all__ = ["animate"]

FRAMES = 60
"""Frames of an animation (log-spaced over the rows: early steps move fastest)."""


def _frames(T: int, frames: int) -> np.ndarray:
    return np.unique(np.round(np.geomspace(1, T, min(frames, T))).astype(int)) - 1


def animate(problem, trajectories: dict, path: str | os.PathLike, *, theory: Optional[dict] = None,
            frames: int = FRAMES, fps: int = 12) -> str:
    """Write an animation of the runs to `path` (.gif with Pillow, .mp4 where ffmpeg exists).

    For two classes in a plane (M = d = 2) the left panel is the γ-plane: cross-entropy
    contours over the 0-1 loss, with each run's γ moving across it; otherwise the margins of
    every token (or representative tokens) over log time, drawn up to the current frame.
    The right panel is the margins over log time with the `theory` curves dashed and a
    cursor at the current time.

    **Arguments:**

    - `problem`: the Problem that was run.
    - `trajectories`: {label: unbatched Trajectory} (e.g. `particles.analysis.label_runs`).
    - `path`: the output file; its extension picks the format.
    - `theory`: {label: (t, values)} curves for the margin panel.
    - `frames`, `fps`: number of frames (log-spaced over the rows) and frames per second.

    **Returns:** the path written (atomically: an interrupted write leaves nothing).

    >>> import os, tempfile, particles as pt
    >>> problem = pt.two_particles(0.95, 0.75)
    >>> path = animate(problem, {"gd": pt.gd(problem, 10.0, 35)}, os.path.join(tempfile.mkdtemp(), "spike.gif"),
    ...                frames=8)
    >>> os.path.getsize(path) > 10_000
    True
    """
    from matplotlib import animation
    from matplotlib.figure import Figure

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".gif", ".mp4"):
        raise ValueError(f"path={path!r} is not allowed: a file ending in .gif or .mp4.")
    if ext == ".mp4" and shutil.which("ffmpeg") is None:
        raise ValueError(f"path={path!r} is not allowed here: .mp4 needs ffmpeg, which is not installed; use .gif.")
    if not trajectories:
        raise ValueError("trajectories={} is not allowed: give at least one {label: Trajectory}.")
    runs = list(trajectories.items())
    fig = Figure(figsize=(10, 4.2))
    left, right = fig.subplots(1, 2, gridspec_kw=dict(left=0.07, right=0.98, bottom=0.14, top=0.88, wspace=0.3))
    planar = is_planar(problem)
    label, main = runs[0]
    plot_margins(right, main, theory=theory, logx=True, p=np.asarray(problem.p))
    right.set_title(f"{label}: margins over log time", fontsize=9)
    n, _ = finite_rows(main, "animate", warn=False)
    t = np.asarray(times(main), np.float64)[:n]
    cursor = right.axvline(t[min(1, n - 1)] if n > 1 else 1.0, color="#D55E00", lw=1.2)
    if planar:
        _gamma_panel(left, problem, trajectories, None)
        for line in list(left.lines):
            line.remove()
        paths = []
        for i, (lab, traj) in enumerate(runs):
            k, _ = finite_rows(traj, "animate", warn=False)
            scores = getattr(traj, "scores", None)
            gam = (gamma_of_scores(problem, np.asarray(scores)[:k]) if scores is not None
                   else gamma_of_margins(problem, np.asarray(traj.margins)[:k]))
            (line,) = left.plot([], [], "-o", ms=2.5, lw=1.2, color=OKABE_ITO[i % len(OKABE_ITO)], label=lab)
            paths.append((line, gam))
        left.legend(fontsize=7, loc="best")
    else:
        m = np.asarray(main.margins, np.float64)[:n]
        keep = t > 0
        left.set_xscale("log")
        left.set_xlim(t[keep].min(), t[keep].max())
        left.set_ylim(np.nanmin(m) - 0.5, np.nanmax(m) + 0.5)
        left.set_xlabel("time (log scale)")
        left.set_ylabel("margin m(x)")
        left.axhline(0.0, color="0.6", lw=0.6)
        left.set_title("particles: one margin per token", fontsize=9)
        paths = [(left.plot([], [], "o", ms=3, color=OKABE_ITO[0])[0], None)]
    order = _frames(n, frames)

    def draw(j):
        k = order[j]
        cursor.set_xdata([max(t[k], t[min(1, n - 1)])] * 2)
        for line, gam in paths:
            if gam is None:
                line.set_data(np.full(m.shape[1], max(t[k], t[keep].min())), m[k])
            else:
                line.set_data(gam[: k + 1, 0], gam[: k + 1, 1])
        fig.suptitle(f"{label}: {'step' if main.steps is not None else 't'} = {t[k]:.4g}", fontsize=10)
        return [cursor] + [line for line, _ in paths]

    movie = animation.FuncAnimation(fig, draw, frames=len(order), blit=False)
    writer = animation.PillowWriter(fps=fps) if ext == ".gif" else animation.FFMpegWriter(fps=fps)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp-{os.getpid()}{ext}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        movie.save(tmp, writer=writer)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
