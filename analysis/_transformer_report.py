"""REPORT.md's section on the Transformers: numbers per run and η, agreement with the particle
prediction, the remaining differences from the original, and each claim of the paper."""

from __future__ import annotations

import math


from ._transformer import _is_reproduction, _runs

FAITHFUL_MODES = ("wo2", "all")

# Every difference from the authors' runs that remains in the faithful setting (the
# paper's exact flags and plotting notebook are not public).
REMAINING_DIFFERENCES = (
    "The paper's exact flags are not public: we take the authors' defaults (batch 512, weight decay 1e-4, "
    "E, P ~ N(0, 1), U and every matrix at torch's `nn.Linear` init, E and U frozen as in their README) and "
    "momentum 0 (the `nomo` of the run names); any other choice is a switch of `Config`.",
    "How the authors froze W_K¹, W_K² for `wo2only` is not public; `wo2` keeps them at their random init "
    "(labelled starting points: random, an `all` run's keys at step s, the ideal memories).",
    "Run length: the paper's is not public; `--full` is 1000 steps (the authors' README example).",
    "The plotted curves are every step of one seed (the authors log every 5th step, `eval_delta`).",
    "JAX float32 on CPU instead of PyTorch float32 on GPU; random streams differ (same laws).",
    "The `all` runs use d = 64 only (the paper also shows d = 128; `--d 128` runs it).",
    "The particle SGD draws the counted positions of a step independently from a fixed pool (a Transformer "
    "batch draws whole sequences, whose positions share their trigger outputs, fresh at every step).",
)


def _f(x, nd: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return "nan"
    return f"{x:.{nd}g}"


def _steps(xs, k: int = 6) -> str:
    xs = list(xs or [])
    if not xs:
        return "none"
    return ", ".join(str(x) for x in xs[:k]) + (f" (+{len(xs) - k})" if len(xs) > k else "")


def _faster(res) -> tuple:
    """(level, steps at smallest η, steps at largest η) for the lowest level both reach,
    else for the lowest level the largest η reaches."""
    lo, hi = res[0], res[-1]
    levels = sorted(hi["steps_to"], key=float)
    for lv in levels:
        if lo["steps_to"][lv] is not None and hi["steps_to"][lv] is not None:
            return lv, lo["steps_to"][lv], hi["steps_to"][lv]
    for lv in levels:
        if hi["steps_to"][lv] is not None:
            return lv, lo["steps_to"][lv], hi["steps_to"][lv]
    return None, None, None


def report_section(result) -> list:
    """The Markdown lines of REPORT.md's section 7 for a [`Run`][particles.transformer.Run] or
    [`Reproduction`][particles.transformer.Reproduction].

    Tables per run and η (loss, speed, the paper's plotted window, spikes, margin
    oscillation), agreement with the particle prediction, the remaining differences from
    the original, and one line per claim of the paper: seen or not, in which mode, at which
    η, with numbers. "Matches the paper" is written only for the faithful modes (wo2, all).

    >>> from particles.transformer import Run
    >>> report_section(Run.empty_for_doc())[0].startswith("Transformer")
    True
    """
    runs = _runs(result)
    quick = getattr(result, "quick", None)
    secs = getattr(result, "info", {}).get("seconds", {}) if _is_reproduction(result) else {}
    out = []
    if _is_reproduction(result):
        claims = bool(result.info.get("claims"))
        call = "claims=True" if claims else f"quick={quick}"
        steps = " and ".join(str(s) for s in dict.fromkeys(r.steps for r in runs.values()))
        out.append(f"Transformer experiment (Bietti et al. 2023 setting), `particles.transformer.reproduce("
                   f"{call})`, {secs.get('total', float('nan')):.0f} s on this machine. "
                   + ("QUICK: reduced batch, steps and pool (see the batch and step columns); the claims below "
                      "need the paper-setting runs." if quick else "Paper settings: batch 512, d = 64"
                      + (f" (W_O² alone from random and ideal keys, {steps} steps: "
                         "`reproduce.py --figure transformer --claims`)." if claims else
                         f" (every mode and starting point, {steps} steps: `reproduce.py --figure transformer --full`).")))
    else:
        out.append(f"Transformer run `{next(iter(runs.values())).label}`.")
    out.append("")
    out += ["| run | batch | steps | η | final loss | steps to loss < level (level) | loss over first 50 records "
            "[min, max] | in 2.4–5 | loss spikes (steps) | W_O² margin path / net (particles) | margin jumps | "
            "accuracy |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        res = r.results()
        lv = _faster(res)[0] if len(res) > 1 else None
        for x in res:
            w = x["window"]["records"]
            st = x["steps_to"].get(lv) if lv else None
            out.append(f"| {r.label} | {r.config['batch']} | {r.steps} | {x['lr']:g} | {_f(x['final_loss'])} | "
                       f"{'—' if lv is None else (_f(st) if st is not None else 'not reached')} ({lv or '—'}) | "
                       f"[{_f(w[0])}, {_f(w[1])}] ({x['window']['records_steps']} records) | "
                       f"{'yes' if x['window']['records_inside'] else 'no'} | {_steps(x['spikes'])} | "
                       f"{_f(x['margin_path'])} ({_f(x.get('pred_margin_path'))}) | {len(x['margin_jumps'])} | "
                       f"{_f(x['final_accuracy'])} |")
    pred = [(n, r, _agreement(r)) for n, r in runs.items() if r.pred_loss is not None]
    if pred:
        out += ["", "Particle prediction of W_O² (`particles.gd` on a pool of counted positions, and `particles.sgd` "
                "drawing as many positions a step as a Transformer batch counts; same η and weight decay, the direct "
                "path kept as `Problem.offset`; float64) against the Transformer:", "",
                "| run | η | λ_max at start (2/λ) | margin corr gd / sgd | margin MAE gd / sgd | loss MAE gd / sgd | "
                "Transformer loss rises (> 20% or spike) | matched by a particle rise (±2 steps) | gd rises |",
                "|---|---|---|---|---|---|---|---|---|"]
        for n, r, ag in pred:
            lam = r.info.get("sharpness")
            for a in ag:
                m = a.get("rises_matched", a.get("spikes_matched"))
                rises = a.get("rises", a.get("spikes", []))
                out.append(f"| {r.label} | {a['lr']:g} | {_f(lam)} ({_f(2 / lam if lam else None)}) | "
                           f"{_f(a['margin_corr'], 2)} / {_f(a.get('sgd_margin_corr'), 2)} | "
                           f"{_f(a['margin_mae'])} / {_f(a.get('sgd_margin_mae'))} | "
                           f"{_f(a['loss_mae'])} / {_f(a.get('sgd_loss_mae'))} | {len(rises)}: {_steps(rises)} | "
                           f"{'—' if m is None else format(m, '.0%')} | {_steps(a['gd_rises'])} |")
    # Starting points against the paper's window.
    w_runs = [(n, r) for n, r in runs.items() if r.config.get("start")]
    if w_runs:
        out += ["", "Starting points of `wo2` against the paper's plotted window (loss between 2.4 and 5 over its "
                "first 50 records, one record every 5 steps):", ""]
        for n, r in w_runs:
            res = r.results()
            inside = [x["lr"] for x in res if x["window"]["records_inside"]]
            lows = ", ".join(f"{x['lr']:g}: [{_f(x['window']['records'][0])}, {_f(x['window']['records'][1])}]"
                             for x in res)
            out.append(f"- {r.label}: {'inside at η = ' + ', '.join(f'{x:g}' for x in inside) if inside else 'outside'}"
                       f" (min, max by η: {lows}; {res[0]['window']['records_steps']} records).")
    out += ["", "Remaining differences from the original:", ""]
    out += [f"- {d}" for d in REMAINING_DIFFERENCES]
    out += ["", "The paper's claims in this setting:", ""]
    out += _claims(runs, quick)
    return out


def _agreement(run) -> list:
    method = getattr(run, "agreement", None)
    return method() if callable(method) else (run.info.get("agreement") or [])


def _claims(runs: dict, quick) -> list:
    lines = []
    tag = " (QUICK run: reduced batch/steps; not evidence for the paper)" if quick else ""
    for n, r in runs.items():
        res = r.results()
        if len(res) < 2:
            continue
        # "Matches the paper" only in the faithful setting at the paper's batch, never in QUICK runs.
        faithful = (r.config.get("mode") in FAITHFUL_MODES and r.config["data"]["name"] == "paper"
                    and not quick and r.config.get("batch") == 512)
        lo, hi = res[0], res[-1]
        # The lowest loss level the smallest η reaches: how many steps each η needs for it.
        reached = [lv for lv in sorted(lo["steps_to"], key=float) if lo["steps_to"][lv] is not None]
        if reached:
            lv = reached[0]
            steps = [(x["lr"], x["steps_to"][lv]) for x in res]
            faster = [lr for lr, st in steps[1:] if st is not None and st < steps[0][1]]
            slower = [lr for lr, st in steps[1:] if lr not in faster]
            speed = (f"steps to a 10-step mean loss < {lv}: " + ", ".join(
                f"η={lr:g}: {'never' if st is None else st}" for lr, st in steps)
                + "; final loss " + ", ".join(f"{_f(x['final_loss'])}" for x in res))
            seen = bool(faster)
            where = (f" at η = {', '.join(f'{x:g}' for x in faster)}" if faster else "")
            where += (f", not at η = {', '.join(f'{x:g}' for x in slower)}" if faster and slower else "")
        else:
            seen = hi["final_loss"] < lo["final_loss"]
            where = ""
            speed = (f"the smallest η reaches no loss level; final loss {_f(lo['final_loss'])} at η = {lo['lr']:g}, "
                     f"{_f(hi['final_loss'])} at η = {hi['lr']:g}")
        if reached and seen and faithful:
            verdict = (f"seen at η = {', '.join(f'{x:g}' for x in faster)} — matches the paper there"
                       + (f"; not at η = {', '.join(f'{x:g}' for x in slower)}" if slower else ""))
        else:
            verdict = ("seen" + where + (" (not the faithful setting)" if not faithful else " — matches the paper")
                       if seen else "not seen")
        lines.append(f"- Faster learning at large η — {r.label}: {verdict}: {speed}.{tag}")
        osc = [(x["lr"], x["margin_path"], x.get("pred_margin_path"), len(x["margin_jumps"])) for x in res]
        grows = osc[-1][1] > 1.5 * osc[0][1] if all(math.isfinite(o[1]) for o in (osc[0], osc[-1])) else False
        pgrows = (osc[-1][2] is not None and osc[0][2] is not None and osc[-1][2] > 1.5 * osc[0][2])
        # Batch noise alone makes margins wiggle more at large η: also ask for jumps (a margin
        # moving by > 25% of the largest one in a step) at the largest η, more than at the smallest.
        seen = grows and osc[-1][3] > osc[0][3]
        detail = "; ".join(f"η={o[0]:g}: path/net {_f(o[1])}" + (f" (particles gd {_f(o[2])})" if o[2] else "")
                           + f", {o[3]} jumps" for o in osc)
        verdict = ("seen — matches the paper" if seen and faithful else "seen (not the faithful setting)" if seen
                   else "not seen")
        lines.append(f"- Oscillating W_O² margins at large η — {r.label}: {verdict} (path length over net change of "
                     f"the margins, 1 = monotone; {detail})"
                     + ("; the noise-free particle GD oscillates more at large η too." if pgrows and r.pred_margins
                        is not None else ".") + tag)
        # A spike: a rise of the batch loss by > 20% (batch noise stays below), a start of a
        # spike beyond 3x the running median, or an initial overshoot (> 10% above the start
        # within 20 steps; the running-median test needs 20 steps of history).
        def n_spikes(x):
            return len(set(x.get("rise_steps", [])) | set(x["spikes"])) + int(x.get("overshoot", 0) > 1.1)

        seen = n_spikes(hi) > 0 and n_spikes(hi) > n_spikes(lo)
        # Benign: the loss comes back below its start; otherwise the run diverges.
        diverge = [x["lr"] for x in res if x["final_loss"] > x.get("initial_loss", math.inf)]
        benign = [x["lr"] for x in res if n_spikes(x) > 0 and x["lr"] not in diverge]
        detail = "; ".join(f"η={x['lr']:g}: {len(x.get('rise_steps', []))} rises > 20% (first at "
                           f"{_steps(x.get('rise_steps', []), 3)}), max loss {_f(x.get('max_loss'))}, initial "
                           f"overshoot ×{_f(x.get('overshoot'))}"
                           + (f" (particles gd ×{_f(x.get('pred_overshoot'))})" if x.get("pred_overshoot") else "")
                           for x in res)
        if seen:
            verdict = ("seen" + (f", benign (the loss recovers below its start) at η = "
                                 f"{', '.join(f'{x:g}' for x in benign)}" if benign else ", never benign")
                       + (f"; the loss diverges at η = {', '.join(f'{x:g}' for x in diverge)}" if diverge else "")
                       + (" — matches the paper" + (" at the benign η" if diverge else "") if faithful and benign
                          else " (not the faithful setting)" if not faithful else ""))
        else:
            verdict = "not seen"
        lines.append(f"- Loss spikes at large η — {r.label}: {verdict} ({detail}).{tag}")
    return lines
