"""The results of the Transformer experiments: `Run` (one setting, every η) and
`Reproduction` (the paper's runs), immutable, saved and loaded as `particles` results."""


from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from .. import _events
from .. import _results
from . import _data, _predict, _train

# The paper's figure: loss between about 2.4 and 5 over its first 50 records (one record
# every `eval_delta` = 5 steps in the authors' code).
WINDOW = dict(low=2.4, high=5.0, records=50, every=5)


@_results.register("transformer_run")
@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One Transformer experiment: the logged training curves of every step size, the
    particle prediction of W_O^2 (W_O^2-only modes) and their agreement.

    **Fields** (L step sizes, S steps, N = 65 tokens, n rows of the W_K^2 probe):

    - `config`: the [`Config`][] as a JSON dict (data, model switches, optimizer, start,
      seed); `label`: a short name ("wo2 from random keys", ...).
    - `lrs` (L,); `loss`, `head_loss`, `accuracy` (L, S): batch values before each step.
    - `margins_O` (L, S + 1, N), `margins_K` (L, S + 1, n): memory probe margins;
      `key_tokens` (n,): the rows of the W_K^2 probe.
    - `first_bad_step` (L,): first non-finite loss, else −1.
    - `pred_loss`, `pred_margins` (`particles.gd` on the pool), `sgd_loss`, `sgd_margins`
      (`particles.sgd`): (L, S + 1[, N]) or None; `copied` (N,): law of the copied token.
    - `final`: {name: (L, ...)} final trained arrays; `snapshots`: {step: {"WK1", "WK2":
      (L, d, d)}}.
    - `info`: JSON dict: `seconds` (train, predict, total), `sharpness` (λ_max of the W_O^2
      loss at the start), `n_pool`, `agreement` (per step size, see [`agreement`][]).

    >>> r = Run.empty_for_doc()
    >>> r.loss.shape, r.label
    ((1, 2), 'doc')
    """

    config: dict
    label: str
    lrs: np.ndarray
    loss: np.ndarray
    head_loss: np.ndarray
    accuracy: np.ndarray
    margins_O: np.ndarray
    margins_K: np.ndarray
    key_tokens: np.ndarray
    first_bad_step: np.ndarray
    pred_loss: Optional[np.ndarray] = None
    pred_margins: Optional[np.ndarray] = None
    sgd_loss: Optional[np.ndarray] = None
    sgd_margins: Optional[np.ndarray] = None
    copied: Optional[np.ndarray] = None
    final: dict = dataclasses.field(default_factory=dict)
    snapshots: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)

    # ---------------------------------------------------------- result-file hooks
    _FIELDS = ("lrs", "loss", "head_loss", "accuracy", "margins_O", "margins_K", "key_tokens", "first_bad_step",
               "pred_loss", "pred_margins", "sgd_loss", "sgd_margins", "copied")

    def _arrays(self) -> dict:
        out = {k: getattr(self, k) for k in self._FIELDS if getattr(self, k) is not None}
        out.update({f"final.{k}": a for k, a in self.final.items()})
        for step, arrays in self.snapshots.items():
            out.update({f"snapshot.{step}.{k}": a for k, a in arrays.items()})
        return {k: np.asarray(a) for k, a in out.items()}

    def _metadata(self) -> dict:
        return dict(config=self.config, label=self.label, info=self.info, seed=self.config.get("seed"))

    @classmethod
    def _from_saved(cls, arrays: dict, metadata: dict) -> "Run":
        kw = {k: arrays.get(k) for k in cls._FIELDS}
        final = {k[len("final."):]: a for k, a in arrays.items() if k.startswith("final.")}
        snaps: dict = {}
        for k, a in arrays.items():
            if k.startswith("snapshot."):
                _, step, name = k.split(".")
                snaps.setdefault(int(step), {})[name] = a
        return cls(config=metadata["config"], label=metadata["label"], final=final, snapshots=snaps,
                   info=metadata.get("info") or {}, **kw)

    @classmethod
    def empty_for_doc(cls) -> "Run":
        """A tiny run with made-up numbers (for examples and tests of the plumbing)."""
        z = np.zeros
        cfg = _train.Config(d=8, lrs=(1.0,), steps=2, batch=2, data=_data.DataConfig.paper(seq_len=8)).to_dict()
        return cls(config=cfg, label="doc", lrs=np.array([1.0]), loss=np.ones((1, 2)),
                   head_loss=np.ones((1, 2)), accuracy=z((1, 2)), margins_O=z((1, 3, 2)), margins_K=z((1, 3, 2)),
                   key_tokens=np.arange(2), first_bad_step=np.array([-1]))

    # ---------------------------------------------------------- numbers
    def __repr__(self) -> str:
        L, S = self.loss.shape
        pred = "with particle prediction" if self.pred_loss is not None else "no prediction"
        return (f"Run({self.label!r}: {L} step sizes {list(np.round(self.lrs, 6))}, {S} steps, batch "
                f"{self.config.get('batch')}, {pred}, {self.info.get('seconds', {}).get('total', float('nan')):.0f} s)")

    @property
    def steps(self) -> int:
        return self.loss.shape[1]

    def agreement(self) -> Optional[list]:
        """[`agreement`][] of the Transformer with the particle prediction, from the saved
        arrays (None without a prediction)."""
        if self.pred_loss is None:
            return None
        pred = dict(loss=self.pred_loss, margins=self.pred_margins, sgd_loss=self.sgd_loss,
                    sgd_margins=self.sgd_margins)
        return _predict.agreement(self.loss, self.margins_O, pred, self.lrs)

    def summary(self) -> dict:
        """JSON-able key numbers: the configuration, [`results`][] per step size, the
        agreement with the particle prediction, the sharpness at the start and timings."""
        info = {k: v for k, v in self.info.items() if k != "agreement"}
        return dict(label=self.label, config=self.config, results=self.results(),
                    agreement=self.agreement(), info=info)

    def results(self) -> list:
        """Key numbers per step size (list of dicts, one per entry of `lrs`).

        - `final_loss`, `final_accuracy`: means over the last 10% of steps.
        - `steps_to`: {level: first step where the 10-step running mean of the loss is below
          level, or None} for a few levels (speed of learning).
        - `window`: (min, max) of the loss over the first 50 records (steps 0, 5, ..., 245)
          and over the first 50 steps, and whether each lies in [2.4, 5] (the paper's plot).
        - `spikes`: loss spike starts beyond minibatch noise (`_events.large_spikes`);
          `rises`: count of marked rises (`_events.loss_rises`, rel = 0.2).
        - `margin_jumps`: steps where a W_O^2 margin jumps (`_events.margin_jumps`);
          `margin_path`: mean over tokens of sum |Δm| / |m_S − m_0| (1 for a monotone
          margin; larger when margins oscillate); the same for the gd prediction
          (`pred_margin_jumps`, `pred_margin_path`, `pred_rises`), which has no batch noise.
        - `rise_steps`: steps where the batch loss rises by more than 20% (batch noise at 512
          sequences stays below it); `overshoot`: max loss over steps 1–20 / initial loss
          (> 1: an initial spike, which `spikes` cannot see: it needs 20 steps of history);
          `max_loss`; `pred_overshoot` for the gd prediction.
        - `median_margin_O`, `min_margin_O`, `median_margin_K`: at the end.
        """
        out = []
        S = self.steps
        last = slice(max(0, S - max(1, S // 10)), None)
        for i, lr in enumerate(self.lrs):
            loss = np.asarray(self.loss[i], np.float64)
            run_mean = np.convolve(loss, np.ones(10) / 10, mode="valid") if S >= 10 else loss
            levels = (3.5, 3.0, 2.5, 2.0, 1.0)
            steps_to = {}
            for lv in levels:
                hit = np.nonzero(run_mean < lv)[0]
                steps_to[str(lv)] = None if hit.size == 0 else int(hit[0] + (9 if S >= 10 else 0))
            rec = loss[:: WINDOW["every"]][: WINDOW["records"]]
            first = loss[: WINDOW["records"]]
            m = np.asarray(self.margins_O[i], np.float64)
            r = dict(
                lr=float(lr),
                initial_loss=float(loss[0]),
                final_loss=float(np.mean(loss[last])),
                final_accuracy=float(np.mean(self.accuracy[i][last])),
                steps_to=steps_to,
                window=dict(records=[float(np.min(rec)), float(np.max(rec))], records_steps=int(len(rec)),
                            steps=[float(np.min(first)), float(np.max(first))],
                            records_inside=bool(rec.min() >= WINDOW["low"] and rec.max() <= WINDOW["high"]),
                            steps_inside=bool(first.min() >= WINDOW["low"] and first.max() <= WINDOW["high"])),
                spikes=_events.large_spikes(loss).tolist(),
                rises=int(_events.loss_rises(loss, rel=0.2).size),
                rise_steps=_events.loss_rises(loss, rel=0.2).tolist(),
                overshoot=float(np.max(loss[1:21]) / loss[0]) if S > 1 else float("nan"),
                max_loss=float(np.nanmax(loss)),
                margin_jumps=_events.margin_jumps(m).tolist(),
                margin_path=_path_ratio(m),
                median_margin_O=float(np.median(m[-1])),
                min_margin_O=float(np.min(m[-1])),
                median_margin_K=float(np.median(self.margins_K[i][-1])),
                first_bad_step=int(self.first_bad_step[i]),
            )
            if self.pred_margins is not None:
                pm = np.asarray(self.pred_margins[i], np.float64)
                pl = np.asarray(self.pred_loss[i], np.float64)
                r.update(pred_margin_jumps=_events.margin_jumps(pm).tolist(), pred_margin_path=_path_ratio(pm),
                         pred_rises=_events.loss_rises(pl, rel=0.0, abs_tol=1e-9).tolist(),
                         pred_overshoot=float(np.max(pl[1:21]) / pl[0]) if len(pl) > 1 else float("nan"),
                         pred_final_loss=float(pl[-1]))
            if self.sgd_loss is not None:
                r.update(sgd_spikes=_events.large_spikes(self.sgd_loss[i]).tolist(),
                         sgd_margin_path=_path_ratio(np.asarray(self.sgd_margins[i], np.float64)))
            out.append(r)
        return out


def _path_ratio(m: np.ndarray) -> float:
    """Median over tokens of the margin's path length over its net change (1: monotone).

    The median: a token whose margin ends where it started has an unbounded ratio."""
    m = m[np.all(np.isfinite(m), axis=1)]
    if len(m) < 2:
        return float("nan")
    path = np.sum(np.abs(np.diff(m, axis=0)), axis=0)
    net = np.abs(m[-1] - m[0])
    ok = net > 1e-9
    return float(np.median(path[ok] / net[ok])) if ok.any() else float("nan")


@_results.register("transformer_reproduction")
@dataclasses.dataclass(frozen=True, eq=False)
class Reproduction:
    """The paper's Transformer experiments: named [`Run`][]s and how they were run.

    **Fields:** `runs` ({name: Run}: "all", "wo2_random", "wo2_from_all", "wo2_ideal",
    "wo2_identity"), `quick` (reduced settings), `info` (JSON: seconds per run and in
    total, the settings and what was reduced against the paper).

    >>> rep = Reproduction(runs=dict(a=Run.empty_for_doc()), quick=True, info={})
    >>> sorted(rep._arrays())[:2]
    ['a::accuracy', 'a::first_bad_step']
    """

    runs: dict
    quick: bool
    info: dict

    def _arrays(self) -> dict:
        return {f"{name}::{k}": a for name, r in self.runs.items() for k, a in r._arrays().items()}

    def _metadata(self) -> dict:
        return dict(quick=self.quick, info=self.info, runs={n: r._metadata() for n, r in self.runs.items()})

    @classmethod
    def _from_saved(cls, arrays: dict, metadata: dict) -> "Reproduction":
        runs = {}
        for name, meta in metadata["runs"].items():
            mine = {k.split("::", 1)[1]: a for k, a in arrays.items() if k.split("::", 1)[0] == name}
            runs[name] = Run._from_saved(mine, meta)
        return cls(runs=runs, quick=bool(metadata["quick"]), info=metadata.get("info") or {})

    def summary(self) -> dict:
        """JSON-able key numbers: per run, its [`Run.summary`][]; timings and settings."""
        return dict(quick=self.quick, info=self.info, runs={n: r.summary() for n, r in self.runs.items()})

    def __repr__(self) -> str:
        names = ", ".join(f"{n} ({r.loss.shape[1]} steps)" for n, r in self.runs.items())
        return f"Reproduction(quick={self.quick}: {names}; {self.info.get('seconds', {}).get('total', float('nan')):.0f} s)"
