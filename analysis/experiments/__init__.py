"""The paper's experiments (paper-notes §4), one module each.

Each module defines `TITLE` and `run(ctx) -> Section`: it computes with `particles`, draws
its figures with `particles.analysis`, and returns them with the key numbers beside the
theory's predictions (Markdown lines for REPORT.md and a JSON-able dict). The command
`particles-reproduce` (`scripts/reproduce.py`) saves the figures and writes the report.
"""

from __future__ import annotations

import dataclasses
import importlib

NAMES = ("landscapes", "spike", "time_to_accuracy", "sharpness", "forgetting", "memory", "transformer")
"""The experiments in the paper's order (1–7)."""


@dataclasses.dataclass
class Context:
    """What every experiment may use: the embedding seed, progress bars, full-length runs, and
    (the Transformers) only the shorter paper-setting subset of `--full` (`--claims`)."""

    seed: int = 0
    progress: bool = False
    full: bool = False
    claims: bool = False


@dataclasses.dataclass
class Section:
    """One experiment's results: `figures` {name: matplotlib Figure}, `text` (Markdown lines
    of its REPORT.md section) and `numbers` (JSON-able)."""

    figures: dict
    text: list
    numbers: dict


def module(name: str):
    """The module of experiment `name` (one of `NAMES`)."""
    if name not in NAMES:
        raise ValueError(f"experiment {name!r} is not allowed: use one of {', '.join(NAMES)}.")
    return importlib.import_module(f"{__name__}.{name}")


def fmt(x, digits: int = 4) -> str:
    """A number for a report table (`str` of anything else)."""
    try:
        return f"{float(x):.{digits}g}"
    except (TypeError, ValueError):
        return str(x)


def circle_problem(key, N: int, a: float, gamma0):
    """d = M = 2: e_x random on the unit circle (fixed key), U = I, f*(x) = x mod 2, Zipf(a), γ(0) = gamma0."""
    import jax
    import numpy as np

    import particles

    E = np.array(jax.random.normal(key, (N, 2)))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    # γ = Wᵀ (u_0 − u_1) with U = I: W0 = (1/2, −1/2) γ0ᵀ gives W0ᵀ (1, −1) = γ0.
    W0 = np.outer([0.5, -0.5], gamma0)
    return particles.Problem.from_embeddings(E, np.eye(2), particles.zipf(N, a), np.arange(N) % 2, W0=W0)


def figure(*shape, width: float, height: float):
    """A figure and its axes grid, laid out by matplotlib's constrained layout."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(*shape, squeeze=False)
