"""griffe extensions for the API pages (mkdocs.yml: mkdocstrings' `extensions`).

`SourceTree` attaches the folder analysis/ to the package `particles` as `particles.analysis`
(pyproject's package-dir maps it so when installing; griffe reads folders and would not
find it). `DoctestBlocks` renders docstring examples (`>>>` blocks) as code:

The library's docstrings carry runnable examples in doctest form (the test suite runs them
with --doctest-modules). Markdown would render a bare `>>> x` line as nested block quotes;
this extension wraps every doctest block (a `>>>` line, its `...` continuations and its
output, up to the next blank line) in a ```pycon fence before mkdocstrings renders the
docstring. Blocks already inside a fence are left alone. Only the rendered text changes,
never the library's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parents[2]
MAPPED = {"particles": {"analysis": ROOT / "analysis"}}
"""{package: {subpackage name: folder}}: pyproject's package-dir, for griffe."""


def fence_doctests(text: str) -> str:
    """`text` with each doctest block wrapped in a ```pycon fence (indentation kept)."""
    lines = text.split("\n")
    out: list[str] = []
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        if in_fence or not stripped.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        if out and out[-1].strip():
            out.append("")  # a fence needs a blank line before it inside a paragraph flow
        out.append(f"{indent}```pycon")
        out.extend(block)
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fence the doctest blocks of every docstring griffe loads."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)


class SourceTree(griffe.Extension):
    """Load the folders that pyproject's package-dir maps into a package as its subpackages."""

    def on_module_members(self, *, node: Any, mod: griffe.Module, agent: Any, **kwargs: Any) -> None:
        for name, folder in MAPPED.get(mod.path, {}).items():
            if name in mod.members or not (folder / "__init__.py").is_file():
                continue
            loader = griffe.GriffeLoader(
                extensions=griffe.load_extensions(DoctestBlocks()),
                docstring_parser=griffe.Parser.google,
                modules_collection=mod.modules_collection,  # aliases resolve across both
            )
            # A private loader call: load the folder as a module whose parent is `mod`
            # (its path becomes particles.analysis), with its submodules.
            sub = loader._load_module(name, folder / "__init__.py", parent=mod)
            mod.set_member(name, sub)
