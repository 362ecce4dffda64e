"""Run pytest on the copy of the repository this file sits in (the mutation run's test command).

`make test` installs the project editable: its import finder maps `particles.analysis` to the
ORIGINAL checkout's `analysis/`, and it would win over the copy's own source tree for that
subpackage. This launcher drops the editable finders and puts the copy first on sys.path, so
that every module imported by the tests (particles, particles.analysis, benchmarks) is the
copy's, the mutated one. Usage (from the copy's root): python mutation/launch.py PYTEST-ARGS.
`mutation/run.py` calls `use_copy` in its forked test processes instead.
"""

import os
import sys


def use_copy(root: str) -> None:
    """Import the project from `root`: no editable finders, `root` first on sys.path."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, root)


if __name__ == "__main__":
    use_copy(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import pytest

    sys.exit(pytest.main(sys.argv[1:]))
