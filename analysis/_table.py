"""The table of `compare`: a `Row` per prediction, a `Comparison` of rows (text, markdown, JSON)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

from ._rows import plain

__all__ = ["Row", "Comparison"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One prediction against its measurement.

    - `quantity`: what is compared, e.g. "margin m(0) at t=1000".
    - `predicted`, `simulated`: numbers (or booleans for yes/no predictions).
    - `abs_error`, `rel_error`: |simulated - predicted| and that over |predicted|
      (None for booleans; inf relative error when the prediction is 0).
    - `holds`: where or why the prediction applies ("exact", "asymptotic, t=1e3", ...).
    """

    quantity: str
    predicted: Any
    simulated: Any
    abs_error: Optional[float]
    rel_error: Optional[float]
    holds: str

    @classmethod
    def of(cls, quantity: str, predicted, simulated, holds: str) -> "Row":
        if isinstance(predicted, (bool, np.bool_)) or isinstance(simulated, (bool, np.bool_)):
            return cls(quantity, bool(predicted), bool(simulated), None, None, holds)
        predicted, simulated = float(predicted), float(simulated)
        err = abs(simulated - predicted)
        rel = err / abs(predicted) if predicted != 0 else (0.0 if err == 0 else math.inf)
        return cls(quantity, predicted, simulated, err, rel, holds)

    @property
    def agrees(self) -> Optional[bool]:
        """For yes/no rows: predicted == simulated; None for numeric rows."""
        if self.abs_error is None:
            return self.predicted == self.simulated
        return None

    @classmethod
    def worst(cls, quantity: str, predicted, simulated, holds: str) -> "Row":
        """The largest deviation over many values: predicted 0, simulated max |sim - pred|,
        rel_error the largest |sim - pred| / |pred| over the non-zero predictions."""
        predicted, simulated = np.asarray(predicted, np.float64), np.asarray(simulated, np.float64)
        err = np.abs(simulated - predicted)
        nz = predicted != 0
        rel = float(np.max(err[nz] / np.abs(predicted[nz]))) if np.any(nz) else None
        return cls(quantity, 0.0, float(err.max()), float(err.max()), rel, holds)

    def to_json(self) -> dict:
        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, str):
        return x
    x = float(x)
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return str(x)
    return f"{x:.6g}" if 1e-3 <= abs(x) < 1e6 else f"{x:.3e}"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Rows of predictions against a run, with the regimes found and notes.

    `text()` renders an aligned plain-text table, `markdown()` a markdown table and
    `to_json()` a list of row dicts.
    """

    rows: list
    regimes: tuple = ()
    integrator: str = "?"
    lr: Optional[float] = None
    notes: tuple = ()

    _HEAD = ("quantity", "predicted", "simulated", "abs error", "rel error", "holds")

    def _cells(self) -> list[tuple[str, ...]]:
        return [(r.quantity, _fmt(r.predicted), _fmt(r.simulated), _fmt(r.abs_error), _fmt(r.rel_error), r.holds)
                for r in self.rows]

    def _title(self) -> str:
        lr = f", lr={_fmt(self.lr)}" if self.lr is not None else ""
        return f"{self.integrator}{lr}; regimes: {', '.join(self.regimes) or 'none recognised'}"

    def text(self) -> str:
        cells = [self._HEAD] + self._cells()
        width = [max(len(c[i]) for c in cells) for i in range(len(self._HEAD))]
        right = (False, True, True, True, True, False)

        def line(c):
            return "  ".join(s.rjust(w) if r else s.ljust(w) for s, w, r in zip(c, width, right)).rstrip()

        out = [self._title(), line(cells[0]), "  ".join("-" * w for w in width)]
        out += [line(c) for c in cells[1:]]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        esc = lambda s: s.replace("|", "\\|")
        out = [f"*{esc(self._title())}*", "", "| " + " | ".join(self._HEAD) + " |",
               "|" + "|".join([":--", "--:", "--:", "--:", "--:", ":--"]) + "|"]
        out += ["| " + " | ".join(esc(s) for s in c) + " |" for c in self._cells()]
        if self.notes:
            out += [""] + [f"- {esc(n)}" for n in self.notes]
        return "\n".join(out)

    def to_json(self) -> list[dict]:
        return [r.to_json() for r in self.rows]

    def __str__(self) -> str:
        return self.text()


# ------------------------------------------------------------------ regimes
