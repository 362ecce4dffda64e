"""Progress bars behind one small interface, so that the library does not depend on how
they are drawn. Bars go to stderr and are silenced by `PARTICLES_QUIET=1`."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True):
    """A tqdm bar on stderr (a no-op object when disabled or quiet)."""
    if not enabled or os.environ.get("PARTICLES_QUIET") == "1":
        yield _Silent()
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False) as bar:
        yield bar


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def set_description(self, s: str) -> None:
        pass
