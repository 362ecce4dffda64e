"""Shared plumbing of the lab's command-line tools (simulate, sweep, reproduce).

Conventions every script follows:

- exit 0 on success; 2 on a usage or input error, with one line on stderr naming the flag,
  the value and what is allowed (argparse errors included, no traceback); 3 on a numerical
  failure, naming the step and what went non-finite. `--debug` shows the traceback instead.
- progress bars (tqdm) on stderr for anything longer than a couple of seconds; off with
  `--quiet`, in `--json` mode and under `PARTICLES_QUIET=1`.
- results are written atomically (temporary file + rename): an interrupted run never
  leaves a truncated JSON, npz or figure behind; figures are refused when their data is
  not finite.
- every results file carries the configuration, the seed and the package versions.

The heavy modules (jax, particles, matplotlib) are imported inside functions: `--help` and
argument errors return at Python start-up speed.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import time
import traceback
from typing import Any, Callable, Iterable, Optional, Sequence

EXIT_OK, EXIT_USAGE, EXIT_NUMERICAL, EXIT_INTERRUPTED = 0, 2, 3, 130


# ---------------------------------------------------------------- errors
class UsageError(Exception):
    """A bad flag value: reported as one line and exit code 2."""

    def __init__(self, flag: str, value: Any, allowed: str):
        self.flag, self.value, self.allowed = flag, value, allowed
        super().__init__(f"{flag}={value} is not allowed: {allowed}")


class NumericalError(Exception):
    """A run went non-finite: reported with the step and the quantity, exit code 3."""


class Interrupted(Exception):
    """A run stopped early on purpose (a checkpointed sweep); exit code 130."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit code 2 (argparse's own usage dump is long)."""

    def error(self, message: str):  # noqa: D102 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_USAGE)


def add_common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """Flags shared by every script: --quiet, --debug and (optionally) --json."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summary text")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print the summary JSON alone on stdout")


def run_main(main: Callable[[Sequence[str]], int], argv: Optional[Sequence[str]] = None, *,
             fast_exit: bool = False) -> None:
    """Run `main(argv)` and turn exceptions into the exit codes above.

    With `fast_exit` (a script's entry point) the process ends with `os._exit` once output is
    flushed: every file has been written atomically by then, and interpreter teardown (JAX's
    backends, idle threads) costs about 0.5 s. It also makes garbage collection rarer.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if fast_exit:
        # Importing and tracing JAX allocates millions of long-lived objects, and the default
        # thresholds rescan them in full collections: about 0.4 s of a 4 s run. Collections
        # stay on, just rarer (the process is ours: this is a script's entry point).
        import gc

        gc.set_threshold(100_000, 50, 1000)
    debug = "--debug" in argv
    prog = os.path.basename(sys.argv[0]) or "particles"
    try:
        code = main(argv)
    except (UsageError, NumericalError, ValueError) as e:
        # The library validates its inputs eagerly and names the argument in a ValueError.
        if debug:
            traceback.print_exc()
        what, code = ("numerical failure", EXIT_NUMERICAL) if isinstance(e, NumericalError) else ("error", EXIT_USAGE)
        sys.stderr.write(f"{prog}: {what}: {_one_line(str(e))}\n")
    except (Interrupted, KeyboardInterrupt) as e:
        sys.stderr.write(f"{prog}: {e if isinstance(e, Interrupted) else 'interrupted'}\n")
        code = EXIT_INTERRUPTED
    sys.stdout.flush()
    sys.stderr.flush()
    if fast_exit:
        os._exit(code or 0)
    sys.exit(code or 0)


def _one_line(s: str) -> str:
    return " ".join(s.split())


# ----------------------------------------------------------- value parsing
def parse_floats(flag: str, text: str, *, positive: bool = False, lo=None, hi=None) -> list[float]:
    """A comma-separated list of floats, or `linspace:a:b:k` / `logspace:a:b:k` (base 10)."""
    text = str(text).strip()
    if text.startswith(("linspace:", "logspace:")):
        kind, *rest = text.split(":")
        if len(rest) != 3:
            raise UsageError(flag, text, f"write {kind}:a:b:k (start, stop, count)")
        try:
            a, b, k = float(rest[0]), float(rest[1]), int(rest[2])
        except ValueError:
            raise UsageError(flag, text, f"write {kind}:a:b:k with numbers a, b and an integer k >= 1") from None
        if k < 1 or not (math.isfinite(a) and math.isfinite(b)):
            raise UsageError(flag, text, f"write {kind}:a:b:k with finite a, b and k >= 1")
        step = (b - a) / (k - 1) if k > 1 else 0.0
        values = [a + i * step for i in range(k)]
        if kind == "logspace":
            values = [10.0**v for v in values]
    else:
        try:
            values = [float(x) for x in text.split(",") if x.strip() != ""]
        except ValueError:
            raise UsageError(flag, text, "a comma-separated list of numbers, or linspace:a:b:k / logspace:a:b:k") from None
    if not values:
        raise UsageError(flag, text, "at least one number")
    for x in values:
        if not math.isfinite(x):
            raise UsageError(flag, text, "finite numbers only")
        if positive and x <= 0:
            raise UsageError(flag, text, "numbers > 0 only")
        if lo is not None and x < lo or hi is not None and x > hi:
            raise UsageError(flag, text, f"numbers in [{lo:g}, {hi:g}] only")
    return values


def parse_ints(flag: str, text: str, *, minimum: int = 0) -> list[int]:
    """A comma-separated list of integers (or a linspace of integers)."""
    values = parse_floats(flag, text)
    out = []
    for x in values:
        if x != round(x) or x < minimum:
            raise UsageError(flag, text, f"integers >= {minimum} only")
        out.append(int(round(x)))
    return out


def check(cond: bool, flag: str, value: Any, allowed: str) -> None:
    if not cond:
        raise UsageError(flag, value, allowed)


# ---------------------------------------------------------------- progress
def bars_enabled(args) -> bool:
    return not (getattr(args, "quiet", False) or getattr(args, "json", False) or os.environ.get("PARTICLES_QUIET") == "1")


def progress(total: int, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm bar on stderr, or a silent stand-in (the library's bar)."""
    from particles._progress import progress_bar

    return progress_bar(total=total, desc=desc, unit=unit, enabled=enabled)


class Log:
    """Text for humans goes to stdout, unless --quiet or --json (then nowhere)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, *lines: str) -> None:
        if self.enabled:
            for line in lines:
                print(line)
            sys.stdout.flush()


# ------------------------------------------------------------ atomic files
# Thin wrappers over particles._io, imported on use so that `--help` does not load JAX.
def _atomic(path: str, write: Callable, suffix: str) -> None:
    from particles._io import atomic_write

    atomic_write(path, write, suffix)


def write_npz(path: str, arrays: dict) -> None:
    from particles._io import atomic_savez

    atomic_savez(path, arrays)


def write_json(path: str, obj: Any) -> None:
    """JSON (NaN/inf written as strings, numpy and JAX values as lists), atomically."""
    from particles._io import write_json as write

    write(path, obj)


def jsonable(x: Any) -> Any:
    from particles._io import jsonable as convert

    return convert(x)


def versions() -> dict:
    from particles._io import versions as collect

    return collect()


def write_text(path: str, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode()), ".txt")


def save_figure(fig, path: str, *, check: Optional[Iterable] = None, dpi: int = 150) -> None:
    """Save a matplotlib figure atomically; refuse when any array in `check` is not finite."""
    import numpy as np

    for a in check or ():
        if not np.all(np.isfinite(np.asarray(a, dtype=float))):
            raise NumericalError(f"refusing to write {path}: its data holds NaN or inf")
    fmt = os.path.splitext(path)[1].lstrip(".") or "png"
    # Every figure of the scripts lays itself out (a layout engine, or fixed margins for
    # `analysis.figure_for_run`); bbox_inches="tight" would draw it a second time.
    _atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi), "." + fmt)


# ------------------------------------------------------- config, versions
def config_of(args: argparse.Namespace) -> dict:
    """The parsed flags as a JSON-ready dict (the run's full configuration)."""
    return {k: jsonable(v) for k, v in sorted(vars(args).items())}


def timestamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


class Clock:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def safe_call(fn, *args, **kwargs):
    """Call a helper from another part of the project; (result, None) or (None, reason).

    With `PARTICLES_STRICT=1` (set by the test suite) the exception propagates instead, so
    that a bug in `analysis` fails the tests rather than becoming a note in a summary.
    """
    try:
        return fn(*args, **kwargs), None
    except Exception as e:  # a broken analysis must not sink the run's results
        if os.environ.get("PARTICLES_STRICT") == "1":
            raise
        return None, f"{getattr(fn, '__name__', fn)} failed: {type(e).__name__}: {_one_line(str(e))[:200]}"
