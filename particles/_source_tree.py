"""`particles.analysis` from a source checkout that is not installed.

`pip install` maps the top-level folder `analysis/` to the subpackage `particles.analysis`
(pyproject's package-dir). A source tree used through PYTHONPATH has no such mapping;
this finder provides it, consulted last, so an installed package always wins.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FOLDERS = {"particles.analysis": os.path.join(_ROOT, "analysis")}


class _SourceTreeFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        folder = _FOLDERS.get(name)
        init = None if folder is None else os.path.join(folder, "__init__.py")
        if init is None or not os.path.isfile(init):
            return None
        # Its own submodules (particles.analysis.x) are then found through its __path__.
        return importlib.util.spec_from_file_location(name, init, submodule_search_locations=[folder])


if not any(isinstance(f, _SourceTreeFinder) for f in sys.meta_path):
    sys.meta_path.append(_SourceTreeFinder())
