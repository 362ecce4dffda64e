#!/usr/bin/env python
"""`python scripts/transformer.py ...` = `particles-transformer ...` (see particles/cli/transformer.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a source checkout

from particles.cli.transformer import entry, main  # noqa: E402,F401  (main: for tests)

if __name__ == "__main__":
    entry()
