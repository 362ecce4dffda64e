"""What every command-line tool shares: errors and exit codes, flags, files, progress.

- Exit 0 on success; 2 on a usage or input error (one line on stderr naming the flag, the
  value and what is allowed; unwritable paths, a full disk, a size that does not fit in
  memory, a corrupt input file); 3 on a numerical failure, naming the step and what went
  non-finite; 130 when interrupted. `--debug` shows the traceback.
- Progress bars (tqdm) on stderr; off with `--quiet`, `--json` or `PARTICLES_QUIET=1`.
- Results are written atomically (temporary file + rename): an interrupted or failed run
  never leaves a truncated file; figures are refused when their data is not finite.
- Every results file carries the configuration, the seed and the package versions.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import math
import os
import sys
import time
import traceback
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from .. import _io
from .._progress import progress_bar

EXIT_OK, EXIT_USAGE, EXIT_NUMERICAL, EXIT_INTERRUPTED = 0, 2, 3, 130


class UsageError(Exception):
    """A bad flag value or input: one line and exit code 2."""

    def __init__(self, flag: str, value: Any, allowed: str):
        self.flag, self.value, self.allowed = flag, value, allowed
        super().__init__(f"{flag}={value} is not allowed: {allowed}")


class NumericalError(Exception):
    """A run went non-finite: reported with the step and the quantity, exit code 3."""


class Interrupted(Exception):
    """A run stopped early, its finished work kept (e.g. a checkpointed sweep): exit 130."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit code 2 (argparse's own usage dump is long)."""

    def error(self, message: str):  # noqa: D102 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_USAGE)


def add_common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """Flags shared by every tool: --quiet, --debug and (optionally) --json."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summary text")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print the summary JSON alone on stdout")


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def run_main(main: Callable[[Sequence[str]], int], argv: Optional[Sequence[str]] = None, prog: str = "particles") -> int:
    """Run `main(argv)` and turn exceptions into the exit codes above; returns the code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        code = main(argv) or EXIT_OK
    except (UsageError, NumericalError, ValueError, OSError, MemoryError) as e:
        # The library validates its inputs eagerly and names the argument in a ValueError;
        # OSError is a path or a disk (unwritable, missing, full); MemoryError a size.
        if debug:
            traceback.print_exc()
        numerical = isinstance(e, NumericalError)
        what = "numerical failure" if numerical else "error"
        sys.stderr.write(f"{prog}: {what}: {_describe(e)}\n")
        code = EXIT_NUMERICAL if numerical else EXIT_USAGE
    except (Interrupted, KeyboardInterrupt) as e:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"{prog}: {e if isinstance(e, Interrupted) else 'interrupted'}\n")
        code = EXIT_INTERRUPTED
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and not isinstance(e, UsageError):
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        if e.errno == errno.ENOSPC:
            return f"cannot write{where}: the disk is full (nothing partial was left behind)"
        return f"cannot use{where}: {e.strerror or e}"
    if isinstance(e, MemoryError):
        return "out of memory: use a smaller system (--n, --m, --d, --steps), --dtype float32, or gd_vocab"
    return _one_line(str(e))


def entry(main: Callable[[Sequence[str]], int], prog: str) -> None:
    """A console script: run `main` on sys.argv and exit with its code.

    (Rarer garbage collections and an `os._exit` after flushing were measured here and gave
    under 6% of the headline command's wall time, within noise: BENCHMARKS.md, finding 7.)
    An interrupted run is the exception: XLA may still be running the interrupted computation
    on its own threads, and the interpreter's teardown under it crashed the process (exit −11
    after printing "interrupted"), so it leaves with `os._exit` once its output is flushed.
    """
    code = run_main(main, prog=prog)
    if code == EXIT_INTERRUPTED:
        os._exit(code)
    sys.exit(code)


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
        values = list(np.linspace(a, b, k)) if k > 1 else [a]
        values = [float(10.0**x if kind == "logspace" else x) for x in values]
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
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            raise UsageError(flag, text, f"numbers in [{lo:g}, {hi:g}] only")
    return values


def parse_ints(flag: str, text: str, *, minimum: int = 0) -> list[int]:
    """A comma-separated list of integers (or a linspace of integers)."""
    out = []
    for x in parse_floats(flag, text):
        if x != round(x) or x < minimum:
            raise UsageError(flag, text, f"integers >= {minimum} only")
        out.append(int(round(x)))
    return out


def check(cond: bool, flag: str, value: Any, allowed: str) -> None:
    if not cond:
        raise UsageError(flag, value, allowed)


def available_memory() -> Optional[float]:
    """Bytes a new allocation can get: Linux's MemAvailable (free memory plus the page cache
    it can reclaim), else the free pages; None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed: float, what: str, advice: str) -> None:
    """Refuse, before allocating, a computation needing more than the machine's free memory."""
    free = available_memory()
    if free is None:
        return
    if needed > 0.8 * free:
        raise UsageError(what, f"{needed / 2**30:.3g} GiB", f"the machine has {free / 2**30:.3g} GiB free; {advice}")


# ---------------------------------------------------------------- output
def bars_enabled(args) -> bool:
    return not (getattr(args, "quiet", False) or getattr(args, "json", False)
                or os.environ.get("PARTICLES_QUIET") == "1")


def progress(total: int, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm bar on stderr, or a silent stand-in (the library's bar)."""
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


def out_folder(flag: str, path: str) -> str:
    """Create the output folder now, so that a bad path fails before any computation."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".particles-write-test")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise UsageError(flag, path, f"a folder that can be created and written ({e.strerror or e})") from None
    return path


write_json = _io.write_json
write_npz = _io.atomic_savez
jsonable = _io.jsonable
versions = _io.versions


def write_text(path: str, text: str) -> None:
    _io.atomic_write(path, lambda f: f.write(text.encode()), ".txt")


def save_figure(fig, path: str, *, check: Optional[Iterable] = None, dpi: int = 150) -> None:
    """Save a matplotlib figure atomically; refuse when any array in `check` is not finite."""
    for a in check or ():
        if not np.all(np.isfinite(np.asarray(a, dtype=float))):
            raise NumericalError(f"refusing to write {path}: its data holds NaN or inf")
    fmt = os.path.splitext(path)[1].lstrip(".") or "png"
    _io.atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi), "." + fmt)


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
    """Call an analysis step; (result, None), or (None, reason) when it fails.

    A failing analysis (a theory table, a detector) must not cost a run its results: it
    becomes a note in the summary. With `PARTICLES_STRICT=1` (set by the test suite) the
    exception propagates instead, so that a bug in the analysis fails the tests.
    """
    try:
        return fn(*args, **kwargs), None
    except Exception as e:
        if os.environ.get("PARTICLES_STRICT") == "1":
            raise
        return None, f"{getattr(fn, '__name__', fn)} failed: {type(e).__name__}: {_one_line(str(e))[:200]}"
