"""The explorer's settings: their ranges, validation, the size guard and the command line.

Every value that reaches the server from the page goes through [`two_settings`][] or
[`many_settings`][] before anything is computed, as a command-line flag goes through
`particles.cli.simulate.validate`: a value out of range becomes an [`InputError`][] whose
message names the setting, the value and what is allowed, shown in the page.

Values are rounded to what the command line writes (η to 4 significant digits, α and p₁ to
4 decimals) and the rounded values are what the app computes with, so the "copy command"
line reproduces the run exactly.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
from typing import Any, Optional

# Ranges of the controls (and of the values accepted from the page).
LR_RANGE = (0.01, 100.0)
TWO_STEPS_MAX = 10_000
MANY_STEPS_MAX = 5_000
N_MAX, M_MAX, D_MAX = 64, 64, 128
ZIPF_RANGE = (0.0, 3.0)
GAMMA_MAX = 100.0
SEED_MAX = 2**31 - 1
# A run beyond this many multiply-adds would take more than a few seconds on 2 cores: it is
# refused before it starts (the sliders stay below it; a hand-made request may not).
FLOP_BUDGET = 2e10
MEMORY_FRACTION = 0.25  # of the free memory, for the saved rows of one run


class InputError(ValueError):
    """A value from the page that is not allowed; the message is shown in the page."""

    def __init__(self, name: str, value: Any, allowed: str):
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"{name}={value!r} is not allowed: {allowed}.")


def _number(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(str(value).strip())
        except ValueError:
            raise InputError(name, value, f"a number in [{lo:g}, {hi:g}]") from None
    x = float(value)
    if not (math.isfinite(x) and lo <= x <= hi):
        raise InputError(name, value, f"a number in [{lo:g}, {hi:g}]")
    return x


def _integer(name: str, value, lo: int, hi: int) -> int:
    x = _number(name, value, lo, hi)
    if x != round(x):
        raise InputError(name, value, f"an integer in [{lo}, {hi}]")
    return int(round(x))


def _round(x: float, digits: int) -> float:
    return float(f"{x:.{digits}g}")


def parse_gamma(text) -> tuple[float, float]:
    """γ₀ from the page's text "γ1, γ2" (a comma or spaces between the two numbers)."""
    parts = str(text).replace(",", " ").split()
    if len(parts) != 2:
        raise InputError("γ₀", text, f"two numbers 'γ1, γ2', each in [{-GAMMA_MAX:g}, {GAMMA_MAX:g}]")
    return tuple(_round(_number("γ₀", s, -GAMMA_MAX, GAMMA_MAX), 6) for s in parts)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class TwoSettings:
    """The two-particle view: correlation α, frequency p₁, step size η, steps, start γ₀, flow."""

    corr: float = 0.95
    p1: float = 0.75
    lr: float = 10.0
    steps: int = 1000
    gamma0: tuple = (0.0, 0.0)
    flow: bool = True


@dataclasses.dataclass(frozen=True)
class ManySettings:
    """The N-particle view: geometry ("equicorrelated" or "sphere"), sizes, frequencies, η."""

    geometry: str = "sphere"
    n: int = 5
    m: int = 5
    d: int = 3
    corr: float = 0.0
    zipf: float = 1.0
    lr: float = 10.0
    steps: int = 100
    seed: int = 0


def two_settings(corr, p1, lr, steps, gamma0, flow) -> TwoSettings:
    """Validated [`TwoSettings`][] from raw page values (`gamma0` a pair or the text "γ1, γ2").

    **Raises:** [`InputError`][] naming the first value out of range.
    """
    corr = round(_number("α (corr)", corr, -1.0, 1.0), 4)
    p1 = round(_number("p₁", p1, 0.01, 0.99), 4)
    lr = _round(_number("η", lr, *LR_RANGE), 4)
    steps = _integer("steps", steps, 1, TWO_STEPS_MAX)
    gamma0 = parse_gamma(gamma0) if isinstance(gamma0, str) else parse_gamma(f"{gamma0[0]}, {gamma0[1]}")
    return TwoSettings(corr, p1, lr, steps, gamma0, bool(flow))


def many_settings(geometry, n, m, d, corr, zipf, lr, steps, seed) -> ManySettings:
    """Validated [`ManySettings`][] from raw page values; the size guard runs here too.

    Equicorrelated inputs exist for α ≥ −1/(N−1) and need d ≥ max(N, M) (the exact vectors
    padded with zeros), as in `simulate.py`; random sphere embeddings take any d ≥ 1.

    **Raises:** [`InputError`][] naming the first value out of range.
    """
    if geometry not in ("equicorrelated", "sphere"):
        raise InputError("geometry", geometry, "'equicorrelated' or 'sphere'")
    n = _integer("N", n, 2, N_MAX)
    m = _integer("M", m, 2, M_MAX)
    d = _integer("d", d, 1, D_MAX)
    zipf = round(_number("Zipf exponent", zipf, *ZIPF_RANGE), 4)
    lr = _round(_number("η", lr, *LR_RANGE), 4)
    steps = _integer("steps", steps, 1, MANY_STEPS_MAX)
    seed = _integer("seed", seed, 0, SEED_MAX)
    corr = round(_number("α (corr)", corr, -1.0, 1.0), 4)
    if geometry == "equicorrelated":
        lo = -1.0 / (n - 1)
        if corr < lo:
            raise InputError("α (corr)", corr, f"a correlation in [{lo:.4g}, 1] (equicorrelated unit vectors, N={n})")
        if d < max(n, m):
            raise InputError("d", d, f"d >= max(N, M) = {max(n, m)} for equicorrelated inputs (or choose the "
                                     "sphere geometry, which takes any d)")
    check_budget(n, m, steps)
    return ManySettings(geometry, n, m, d, corr, zipf, lr, steps, seed)


def check_budget(n: int, m: int, steps: int, n_pad: Optional[int] = None, m_pad: Optional[int] = None) -> None:
    """Refuse, before it starts, a run that would exceed this machine (time or memory).

    A GD step costs about 2 (N²M + NM²) multiply-adds on the padded shapes, and the run keeps
    (steps + 1) × (N + 3) numbers; see `FLOP_BUDGET` and `MEMORY_FRACTION`.
    """
    from ._compute import pad_size

    n_pad = n_pad or pad_size(max(n, m))
    m_pad = m_pad or n_pad
    flops = 2.0 * steps * (n_pad**2 * m_pad + n_pad * m_pad**2)
    if flops > FLOP_BUDGET:
        raise InputError("N·M·steps", f"{n}·{m}·{steps}", f"at most about {FLOP_BUDGET:.0e} multiply-adds per run "
                         f"(this one needs {flops:.1e}); lower N, M or steps")
    needed = 8.0 * (steps + 1) * (n_pad + 3) * 2
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if needed > MEMORY_FRACTION * free:
        raise InputError("N·steps", f"{n}·{steps}", f"a run whose rows fit in memory ({needed / 2**30:.2g} GiB "
                         f"needed, {free / 2**30:.2g} GiB free)")


# ------------------------------------------------------------- command lines
def _g(x: float) -> str:
    return f"{x:.10g}"


def two_command(s: TwoSettings) -> list[str]:
    """The `simulate.py` arguments for the two-particle settings (`--n 2` is `two_particles`;
    a start away from W = 0 is `--gamma0=g1,g2`)."""
    p2 = _g(round(1.0 - s.p1, 4))
    args = ["--n", "2", "--corr", _g(s.corr), "--p", f"{_g(s.p1)},{p2}", "--lr", _g(s.lr), "--steps", str(s.steps)]
    if any(s.gamma0):
        args.append(f"--gamma0={_g(s.gamma0[0])},{_g(s.gamma0[1])}")
    return args + ([] if s.flow else ["--no-flow"])


def many_command(s: ManySettings) -> list[str]:
    """The `simulate.py` arguments for the N-particle settings (no flow: the view has none)."""
    args = ["--n", str(s.n), "--m", str(s.m), "--d", str(s.d)]
    if s.geometry == "sphere":
        args += ["--geometry", "sphere", "--seed", str(s.seed)]
    else:
        args += ["--corr", _g(s.corr)]
    return args + ["--zipf", _g(s.zipf), "--lr", _g(s.lr), "--steps", str(s.steps), "--no-flow"]


def command_line(args: list[str]) -> str:
    """The shell line that runs `simulate.py` with `args`."""
    return "python scripts/simulate.py " + " ".join(shlex.quote(a) for a in args)
