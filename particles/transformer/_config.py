"""What a Transformer experiment is: the training modes and the `Config` of one run
(data, model switches, optimizer, starting point), validated on construction."""


from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import numpy as np

from .. import _validate as v
from . import _data, _model


class Mode(NamedTuple):
    trainable: tuple
    model: dict  # overrides of ModelConfig's defaults
    start: Optional[str]  # default starting point of the key matrices (W_O^2-only modes)
    wo2_zero: bool  # W_O^2 starts at 0 instead of its random init
    doc: str


MODES = {
    "wo2": Mode(("WO2",), {}, "random", False,
                "the paper's `wo2only` runs: W_O^2 alone learns; every other matrix, E and U stay at their "
                "random init (or the key matrices of `start`)"),
    "all": Mode(("WK1", "WK2", "WO2"), {}, None, False,
                "the authors' trainable set: W_K^1, W_K^2, W_O^2 learn from random init; W_V^1, W_O^1, W_V^2, E "
                "and U stay frozen (their README freezes E and U)"),
    "wo2_identity": Mode(("WO2",), dict(sqrtd_embeddings=True, output_init="normal", values="identity"), "ideal", True,
                         "the project's `wo2` before issue #14, kept to compare: identity values (W_V^1 = W_V^2 = I, "
                         "W_O^1 orthogonal), E, P, U ~ N(0, I/d), refined ideal key memories, W_O^2 = 0; W_O^2 then "
                         "reads clean token embeddings, but its loss is 9x sharper than the original's"),
    "all6": Mode(_model.MATRICES, {}, None, False,
                 "all six matrices learn (the project's `all6` before issue #14); the authors keep W_V^1, W_O^1, "
                 "W_V^2 frozen, and this diverges at eta >= 5"),
}
STARTS = ("random", "all", "ideal")
OBJECTIVES = ("head", "all")


@dataclasses.dataclass(frozen=True)
class Config:
    """One experiment: data, model, optimizer, step sizes, starting point. Validated on
    construction (a `ValueError` naming the field).

    **Fields:**

    - `mode`: one of [`MODES`][] ("wo2", "all", "wo2_identity", "all6"): what learns.
    - `data`: a [`DataConfig`][] (default `DataConfig.paper()`: k = 5 fixed triggers, T = 256).
    - `d`; `sqrtd_embeddings`, `output_init`, `values`, `attention_sqrtd`: the
      [`ModelConfig`][] switches (None: the mode's default, the authors' for wo2/all).
    - `trainable`: override of the mode's trainable arrays (names among E, U and the six
      matrices; e.g. add "E", "U" for the authors' unfrozen-embedding default).
    - `lrs`: SGD step sizes, run side by side on the same batches; `steps`; `batch`
      (sequences per step, 512 in the paper); `momentum` (0: the paper's `nomo` runs);
      `weight_decay` (1e-4, the authors' default); `objective` ("head": counted positions
      only, the authors' `loss_head_only`; "all": every position).
    - `start` (W_O^2-only modes): "random" (the key matrices at their random init),
      "all" (W_K^1, W_K^2 of an `all` run at step `start_step` with step size `start_lr`,
      same seed, batch and optimizer) or "ideal" (the outer-product memories of
      [`ideal_keys`][], refined with `refine_steps` Adam steps each). W_O^2 restarts at
      its random init (0 for "wo2_identity").
    - `seed`: one seed for the initialisation, the batches and the refinement.
    - `snapshot_steps`: steps at which W_K^1, W_K^2 are kept (for `start="all"` runs).

    >>> Config(mode="wo2", d=8, lrs=(1.0,), steps=2, batch=2, data=_data.DataConfig.paper(seq_len=8)).model_config().d
    8
    """

    mode: str = "wo2"
    data: Optional[_data.DataConfig] = None
    d: int = 64
    lrs: tuple = (20.0, 50.0, 100.0, 200.0)
    steps: int = 1000
    batch: int = 512
    momentum: float = 0.0
    weight_decay: float = 1e-4
    objective: str = "head"
    start: Optional[str] = None
    start_step: int = 100
    start_lr: float = 10.0
    refine_steps: int = 300
    sqrtd_embeddings: Optional[bool] = None
    output_init: Optional[str] = None
    values: Optional[str] = None
    attention_sqrtd: bool = True
    trainable: Optional[tuple] = None
    seed: int = 0
    snapshot_steps: tuple = ()

    def __post_init__(self):
        if self.mode not in MODES:
            v.fail("mode", self.mode, f"use one of {tuple(MODES)}")
        if self.data is None:
            object.__setattr__(self, "data", _data.DataConfig.paper())
        elif not isinstance(self.data, _data.DataConfig):
            v.fail("data", type(self.data).__name__, "a DataConfig (e.g. DataConfig.paper())")
        if self.objective not in OBJECTIVES:
            v.fail("objective", self.objective, f"use one of {OBJECTIVES}")
        v.check_count("steps", self.steps, 1)
        v.check_count("batch", self.batch, 1)
        v.check_count("seed", self.seed, 0)
        v.check_count("refine_steps", self.refine_steps, 0)
        v.check_count("start_step", self.start_step, 0)
        lrs = np.asarray(self.lrs, dtype=np.float64)
        if lrs.ndim != 1 or lrs.size == 0:
            v.fail("lrs", self.lrs, "a non-empty list of step sizes")
        v.check_positive("lrs", lrs)
        object.__setattr__(self, "lrs", tuple(float(x) for x in lrs))
        v.check_positive("start_lr", self.start_lr)
        for name in ("momentum", "weight_decay"):
            x = getattr(self, name)
            if not (isinstance(x, (int, float)) and np.isfinite(x) and x >= 0):
                v.fail(name, x, "a finite number >= 0")
        if not 0 <= self.momentum < 1:
            v.fail("momentum", self.momentum, "it must lie in [0, 1)")
        mode = MODES[self.mode]
        start = mode.start if self.start is None else self.start
        if mode.start is None:
            if self.start is not None:
                v.fail("start", self.start, f"only the W_O^2-only modes take a starting point, not mode={self.mode!r}")
        elif start not in STARTS:
            v.fail("start", start, f"use one of {STARTS}")
        object.__setattr__(self, "start", start)
        if self.trainable is not None:
            bad = [n for n in self.trainable if n not in _model.TRAINABLE_NAMES]
            if bad or not self.trainable:
                v.fail("trainable", self.trainable, f"a non-empty tuple of names among {_model.TRAINABLE_NAMES}")
            object.__setattr__(self, "trainable", tuple(self.trainable))
        snaps = tuple(int(s) for s in self.snapshot_steps)
        if any(s < 0 or s > self.steps for s in snaps):
            v.fail("snapshot_steps", self.snapshot_steps, f"steps between 0 and steps={self.steps}")
        object.__setattr__(self, "snapshot_steps", snaps)
        self.model_config()  # validates the model switches

    @property
    def trainable_names(self) -> tuple:
        return MODES[self.mode].trainable if self.trainable is None else self.trainable

    def model_config(self) -> _model.ModelConfig:
        """The resolved [`ModelConfig`][] (the mode's defaults, then the explicit switches)."""
        kw = dict(MODES[self.mode].model)
        for name in ("sqrtd_embeddings", "output_init", "values"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        return _model.ModelConfig(d=v.check_count("d", self.d, 1), attention_sqrtd=self.attention_sqrtd, **kw)

    def key_tokens(self) -> Optional[np.ndarray]:
        """Rows of the W_K^2 probe: the fixed triggers, else every token (as the authors)."""
        return np.asarray(self.data.triggers) if self.data.fixed_triggers else None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "data"}
        out["data"] = self.data.to_dict()
        out["model"] = self.model_config().to_dict()
        out["trainable"] = list(self.trainable_names)
        out["lrs"] = list(self.lrs)
        out["snapshot_steps"] = list(self.snapshot_steps)
        return out

    def describe(self) -> str:
        """One line: the exact setting, for figure titles."""
        m = self.model_config()
        s = f"{self.mode}" + (f" from {self.start} keys" if self.start else "")
        s += (f", d={m.d}, batch={self.batch}, momentum={self.momentum:g}, wd={self.weight_decay:g}, "
              f"E,P~N(0,{'1/d' if m.sqrtd_embeddings else '1'}), U {m.output_init}, values {m.values}")
        return s + f"; {self.data.describe()}"
