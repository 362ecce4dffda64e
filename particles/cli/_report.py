"""What `simulate` says about each run: its end, its events, its stability, theory beside it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

import particles

from . import _common as c


def failure_of(name: str, traj):
    """None when the run is finite throughout, else what went non-finite and when."""
    status = int(np.asarray(traj.status))
    if status == particles.Status.NON_FINITE and traj.steps is not None:
        return f"{name}: the state became non-finite (NaN/inf) at step {int(np.asarray(traj.first_bad_step))}"
    if status != particles.Status.OK:
        return f"{name}: {traj.message}"
    # The integrators watch their state (W for gd_weights); the observables can still overflow.
    when = np.asarray(traj.steps if traj.steps is not None else traj.t)
    for field in ("loss", "margins"):
        a = np.asarray(getattr(traj, field), np.float64)
        bad = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
        if bad.any():
            k = int(np.argmax(bad))
            kind = "NaN" if np.isnan(a[k]).any() else "inf"
            unit = "step" if traj.steps is not None else "time"
            return f"{name}: the {field} became non-finite ({kind}) at {unit} {when[k]:g}"
    return None


def nan_path(obj, path: str = ""):
    """The first place in a nested dict/list holding NaN (a derived number that overflowed)."""
    if isinstance(obj, dict):
        found = (nan_path(v, f"{path}.{k}") for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        found = (nan_path(v, f"{path}[{i}]") for i, v in enumerate(obj))
    elif isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        return path if np.isnan(obj).any() else None
    elif isinstance(obj, float) or (isinstance(obj, str) and obj == "nan"):
        return path if (obj == "nan" or math.isnan(obj)) else None
    else:
        return None
    return next((f for f in found if f), None)


def analyse(problem, name: str, traj, lr, lam0: float, notes: list):
    """(the run's result dict, its theory table or None); failures are recorded, not raised."""
    import particles.analysis as pa

    res = dict(name=name, integrator=traj.integrator, lr=lr, status=int(np.asarray(traj.status)),
               message=traj.message, final_loss=float(np.asarray(traj.loss)[-1]),
               final_accuracy=float(np.asarray(traj.accuracy)[-1]),
               final_margins=np.asarray(traj.margins)[-1].tolist())
    failure = failure_of(name, traj)
    if failure:
        res["failure"] = failure
        return res, None
    summary, err = c.safe_call(pa.summarize, traj)
    if summary is None:
        notes.append(err)
    else:
        res["summary"] = summary
    if lr is not None:
        lam_end = float(particles.theory.sharpness(problem, traj.final_scores))
        res.update(stability_ratio_start=lr * lam0 / 2, stability_ratio_end=lr * lam_end / 2, sharpness_end=lam_end)
    table, err = c.safe_call(pa.compare, problem, traj, lr=lr)
    if table is None:
        notes.append(err)
    else:
        kept = [r for r in table.rows if nan_path(dataclasses.asdict(r)) is None]
        if len(kept) < len(table.rows):
            notes.append(f"{name}: {len(table.rows) - len(kept)} theory row(s) dropped: non-finite prediction "
                         "or error (overflow at these settings)")
        table = dataclasses.replace(table, rows=kept)
    # A finite run can still give non-finite derived numbers (a prediction that overflows at
    # lr = 1e308): never report those as a success.
    where = nan_path(res, name)
    if where:
        res["failure"] = f"{where} is NaN (overflow at these settings)"
    return res, table


def print_run(name: str, traj, res: dict, table) -> list[str]:
    """The lines `simulate` prints for one run."""
    flow = traj.steps is None
    head = name + (f" (t1 = {float(np.asarray(traj.t)[-1]):g})" if flow else f" (η = {res['lr']:g})")
    lines = [f"\n== {head}: {res['message']}",
             f"   final loss {res['final_loss']:.6g}, accuracy {res['final_accuracy']:.4g}, "
             f"margins {_vec(res['final_margins'])}"]
    s = res.get("summary", {})
    if s:
        big = s.get("largest_spike")
        lines.append(f"   loss spikes {s.get('spikes')}"
                     + (f" (largest +{big['height']:.4g} nats at {'t' if flow else 'step'} {big['step']}, "
                        f"peak {big['peak_step']})" if big else "")
                     + f"; margin oscillations {_vec(s.get('oscillations'), int)}; "
                       f"sign flips {_vec(s.get('sign_flips'), int)}")
        unit = "time" if flow else "step"
        first, stays = s.get("first_full_accuracy"), s.get("full_accuracy_from")
        shown = "never" if first is None else (f"t = {first:.4g}" if flow else f"{first}")
        lines.append(f"   first {unit} of 100% accuracy: {shown}"
                     + ("" if stays is None or stays == first else
                        f"; 100% for good from {unit} {stays if not flow else f'{stays:.4g}'}")
                     + (f"; ends in a period-{s['cycle']['period']} cycle"
                        if s.get("cycle") and s["cycle"]["period"] > 1 else ""))
        if flow and traj.metadata.get("steady_state_t") is not None:
            lines.append(f"   at rest (steady state) from t = {traj.metadata['steady_state_t']:.4g}; "
                         f"{traj.metadata.get('num_steps')} solver steps ({traj.metadata.get('solver')})")
    if "stability_ratio_start" in res:
        lines.append(f"   stability ratio η·λ_max/2: {res['stability_ratio_start']:.4g} at start, "
                     f"{res['stability_ratio_end']:.4g} at end (stable below 1)")
    if table is not None and table.rows:
        lines.append("   theory vs simulation:")
        lines += ["     " + ln for ln in table.text().splitlines()]
    return lines


def _vec(v, kind=float) -> str:
    if v is None:
        return "-"
    v = list(v)
    if len(v) > 8:
        if kind is int:
            return f"total {sum(v)} over {len(v)} tokens (max {max(v)})"
        return f"[{v[0]:.4g}, {v[1]:.4g}, ..., {v[-1]:.4g}] ({len(v)})"
    return "(" + ", ".join(f"{x}" if kind is int else f"{x:.4g}" for x in v) + ")"
