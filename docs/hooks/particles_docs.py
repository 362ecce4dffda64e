"""MkDocs hooks of the particles documentation (mkdocs.yml: `hooks:`).

Pages hold markers that this hook replaces at build time, so that nothing is copied by hand:

- `<!-- particles:api MODULE -->`: the API reference of MODULE, one `::: MODULE.name`
  block per public name, in the order of the module's re-export list (`from ._x import
  a as a`), grouped by the private module that defines them. A public name that no block
  documents cannot exist: the sections come from the module itself.
- `<!-- particles:cli -->`: every command-line tool with every flag, read from its argparse
  parser (the console scripts of pyproject.toml, the public modules of `particles.cli`,
  and `scripts/*.py`).
- `<!-- particles:report -->`: docs/figures/REPORT.md (written by `make docs-figures`),
  with its links pointing at the committed PNGs.

Links in the tutorials (notebook pages, rendered by nbconvert) are rewritten to the pages
mkdocs writes, and checked. The hook also keeps the site offline: Material's offline plugin
links its iframe-worker polyfill from a CDN, which is replaced by the vendored copy; the
MathJax and Mermaid loaders of nbconvert's template are removed from the notebook pages; and
every page is checked for external scripts, stylesheets or fonts (a warning, so
`mkdocs build --strict` fails on one).
"""

from __future__ import annotations

import argparse
import ast
import html
import importlib
import importlib.util
import logging
import os
import pkgutil
import posixpath
import re
import sys
import tomllib
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.particles_docs")

ROOT = Path(__file__).resolve().parents[2]
SHIM = "assets/javascripts/iframe-worker-shim.js"


# ------------------------------------------------------------------ set-up
def on_startup(command, dirty):  # noqa: ARG001 - mkdocs hook signature
    # Tutorials executed by mkdocs-jupyter inherit this environment: no progress bars in
    # the rendered outputs. The repository root first on the path: the library of this
    # checkout, installed or not.
    os.environ.setdefault("PARTICLES_QUIET", "1")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def on_config(config):
    polyfills = [p for p in config.extra.get("polyfills", []) if "iframe-worker" not in str(p)]
    config.extra["polyfills"] = polyfills + [SHIM]
    return config


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001
    if "<!-- particles:" not in markdown:
        return markdown

    def replace(match):
        kind, arg = match.group(1), (match.group(2) or "").strip()
        if kind == "api":
            return api_markdown(arg)
        if kind == "cli":
            return cli_markdown()
        if kind == "report":
            return report_markdown()
        log.warning(f"{page.file.src_path}: unknown marker particles:{kind}")
        return match.group(0)

    return re.sub(r"<!-- particles:(\w+)([^>]*?)-->", replace, markdown)


# ------------------------------------------------------------ API sections
SECTIONS = {
    # private module (relative to the documented package) -> section title
    "particles": {
        "_problem": "Problems",
        "_geometry": "Problems",
        "_observables": "Observables of the scores",
        "_gd": "Integrators",
        "_flow": "Integrators",
        "_weights": "Integrators",
        "_dynamics": "The dynamics: one step, the force",
        "_trajectory": "Results and files",
        "_results": "Results and files",
        "_status": "Results and files",
        "_schedule": "Results and files",
        "_sweep": "Sweeps and grids",
        "_families": "Sweeps and grids",
        "_cell": "Sweeps and grids",
        "_grid": "Sweeps and grids",
        "_vocab": "Vocabulary scale",
    },
    "particles.theory": {
        "_orthogonal": "Orthogonal embeddings (closed forms)",
        "_lambertw": "Lambert W (log space)",
        "_two_particles": "Two particles",
        "_separable": "Separable case: the max-margin W",
        "_sharpness": "Sharpness and stability",
        "_underparameterized": "Under-parameterised memories: the cross-entropy minimiser",
        "_zero_one": "Under-parameterised memories: the best 0-1 loss",
    },
    "particles.analysis": {
        "_compare": "Theory against simulation",
        "_detectors": "Detectors of events",
        "_plots": "Plots",
        "_figure": "Plots",
        "_phase": "Plots",
        "_animate": "Plots",
    },
    "particles.transformer": {
        "_data": "Data",
        "_model": "Model",
        "_train": "Training",
        "_predict": "The particle prediction",
        "_reproduce": "Experiments",
    },
}

# Where a package's __init__.py lives in the source tree (particles.analysis is analysis/).
INIT_FILES = {"particles.analysis": ROOT / "analysis" / "__init__.py"}


def _init_file(module: str) -> Path:
    if module in INIT_FILES:
        return INIT_FILES[module]
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def reexports(module: str) -> list[tuple[str, list[str]]]:
    """[(source module, [public names])] in the order of the module's import statements."""
    tree = ast.parse(_init_file(module).read_text(encoding="utf-8"))
    groups: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names = [a.asname or a.name for a in node.names if not (a.asname or a.name).startswith("_")]
            if names:
                groups.setdefault(node.module, []).extend(names)
    return list(groups.items())


def _module_title(module: str, source: str) -> str:
    path = _init_file(module).parent / (source.replace(".", "/") + ".py")
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except OSError:
        doc = ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    return first.rstrip(".") or source.lstrip("_")


def api_markdown(module: str) -> str:
    """The `:::` blocks of every public name of `module`, grouped into sections."""
    if module == "particles.cli":
        return cli_api_markdown()
    try:
        groups = reexports(module)
    except (OSError, SyntaxError) as e:
        log.warning(f"API of {module}: cannot read its re-export list ({e})")
        return ""
    titles = SECTIONS.get(module, {})
    known = list(titles)  # sections and, within one, source modules in the order of SECTIONS
    order = list(dict.fromkeys(titles.values()))

    def rank(group):
        source = group[0]
        if source in titles:
            return (order.index(titles[source]), known.index(source))
        return (len(order), 0)  # unknown modules last, in the order they are imported

    sections: dict[str, list[str]] = {}
    for source, names in sorted(groups, key=rank):
        title = titles.get(source) or _module_title(module, source)
        sections.setdefault(title, []).extend(names)
    options: list[str] = []
    out = []
    for title, names in sections.items():
        if len(sections) > 1:  # one source module: no section heading
            out += [f"## {title}", ""]
        for name in names:
            out += [f"::: {module}.{name}", *options, ""]
    return "\n".join(out)


def cli_api_markdown() -> str:
    out = []
    for name in _cli_modules():
        out += [f"::: particles.cli.{name}", "    options:", "      members: [main, entry, build_parser]", ""]
    return "\n".join(out)


# ---------------------------------------------------------- command line
class _Captured(Exception):
    def __init__(self, parser):
        super().__init__("parser captured")
        self.parser = parser


def _cli_modules() -> list[str]:
    import particles.cli

    return [m.name for m in pkgutil.iter_modules(particles.cli.__path__) if not m.name.startswith("_")]


def _tools() -> dict[str, str | None]:
    """{tool name: console script or None}, in the order of pyproject's [project.scripts]."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f).get("project", {}).get("scripts", {})
    tools: dict[str, str | None] = {}
    for command, target in scripts.items():
        tools[target.split(":")[0].rsplit(".", 1)[-1]] = command
    for name in _cli_modules():
        tools.setdefault(name, None)
    for path in sorted((ROOT / "scripts").glob("*.py")):
        tools.setdefault(path.stem, None)
    return tools


def _load_tool(name: str):
    """The module defining tool `name`: particles.cli.<name>, else scripts/<name>.py."""
    try:
        return importlib.import_module(f"particles.cli.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"particles.cli.{name}":
            raise
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_particles_docs_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parser_of(module) -> argparse.ArgumentParser:
    """The tool's parser: `build_parser()`, or the one its `main` builds (captured at parse)."""
    if hasattr(module, "build_parser"):
        return module.build_parser()
    original = argparse.ArgumentParser.parse_args

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = capture
    try:
        module.main(["--help"])
    except _Captured as c:
        return c.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise RuntimeError(f"{module.__name__}.main built no argparse parser")


def _cell(text: str) -> str:
    return html.escape(" ".join(str(text).split()), quote=False).replace("|", "\\|")


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    takes_value = action.nargs != 0
    metavar = action.metavar or (action.dest.upper() if takes_value else "")
    if isinstance(action, argparse.BooleanOptionalAction):
        return ", ".join(f"`{s}`" for s in action.option_strings)
    return ", ".join(f"`{s} {metavar}`" if takes_value else f"`{s}`" for s in action.option_strings)


def _default(action: argparse.Action) -> str:
    d = action.default
    if d is None or d is argparse.SUPPRESS or action.nargs == 0 and d is False:
        return ""
    if isinstance(action, argparse.BooleanOptionalAction):
        return "on" if d else "off"
    return f"`{d}`"


def render_parser(parser: argparse.ArgumentParser, name: str, command: str | None, doc: str) -> str:
    script = f"python scripts/{name}.py"
    shown = command or script
    parser.prog = shown
    formatter = parser._get_formatter()
    out = [f"## {name}", ""]
    how = f"`{command}` (console script) or `{script}`" if command else f"`{script}`"
    out += [f"Run as {how}. {_cell(parser.description or '')}", ""]
    out += ["```text", parser.format_usage().strip(), "```", ""]
    rest = (doc or "").strip().split("\n\n")[1:]
    if rest:
        out += ['??? note "More from the tool\'s docstring"', "", "    ```text"]
        out += ["    " + line if line.strip() else "" for line in "\n\n".join(rest).split("\n")]
        out += ["    ```", ""]
    exclusive = {id(a): g for g in parser._mutually_exclusive_groups for a in g._group_actions}
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS]
        if not actions:
            continue
        out += [f"**{group.title}**" + (f": {_cell(group.description)}" if group.description else ""), ""]
        out += ["| flag | default | meaning |", "| --- | --- | --- |"]
        for a in actions:
            text = formatter._expand_help(a) if a.help else ""
            if a.choices is not None and not all(str(c) in text for c in a.choices):
                text += f" (one of: {', '.join(map(str, a.choices))})"
            if a.required:
                text += " (required)"
            if id(a) in exclusive:
                others = [s for b in exclusive[id(a)]._group_actions if b is not a for s in b.option_strings]
                text += f" (not with {', '.join(others)})"
                if exclusive[id(a)].required:
                    text += " (one of these is required)"
            out.append(f"| {_flag(a)} | {_default(a)} | {_cell(text)} |")
        out.append("")
    if parser.epilog:
        out += [_cell(parser.epilog), ""]
    return "\n".join(out)


def cli_markdown() -> str:
    out = []
    for name, command in _tools().items():
        try:
            module = _load_tool(name)
            parser = parser_of(module)
        except Exception as e:  # a broken tool must not silently vanish from its page
            log.warning(f"command-line tool {name!r}: cannot read its parser ({type(e).__name__}: {e})")
            continue
        out.append(render_parser(parser, name, command, module.__doc__ or ""))
    return "\n".join(out)


# -------------------------------------------------------------- the report
REPORT = ROOT / "docs" / "figures" / "REPORT.md"


def report_markdown() -> str:
    """docs/figures/REPORT.md without its title, its links pointing into figures/."""
    if not REPORT.exists():
        log.warning("docs/figures/REPORT.md is missing: run `make docs-figures`")
        return ""
    lines = REPORT.read_text(encoding="utf-8").split("\n")
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out: list[str] = []
    pngs: list[str] = []  # the PNGs of the current section, from its "Figures:" line
    for line in lines:
        if line.startswith("Figures: "):
            # "Figures: [a.png](a.png), [a.pdf](a.pdf), ... (12.3 s)": every PNG is shown where the
            # report shows its first one; the PDFs are not kept in docs/figures/. Keep the time.
            pngs = [t for _, t in re.findall(r"\[([^\]]+)\]\(([^)]+)\)", line) if t.endswith(".png")]
            timing = re.search(r"\(([\d.]+ s)\)\s*$", line)
            out.append(f"*Computed in {timing.group(1)}.*" if timing else "")
            continue
        image = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+\.png)\)\s*", line)
        if image:
            shown = pngs if image.group(2) in pngs else [image.group(2)]
            for png in shown:
                if not (REPORT.parent / png).exists():
                    log.warning(f"docs/figures/REPORT.md shows {png}, which docs/figures/ lacks: run `make docs-figures`")
                out += [f"![{png[:-4]}](figures/{png})", ""]
            pngs = []
            continue
        out.append(line)
    return "\n".join(out)


# --------------------------------------------------------- offline check
EXTERNAL = re.compile(
    r"""<script[^>]+src=["']?(https?:)?//"""  # a script from another host
    r"""|<link[^>]+href=["']?(https?:)?//[^>]*stylesheet|<link[^>]+stylesheet[^>]+href=["']?(https?:)?//"""
    r"""|@import\s+(url\()?["']?(https?:)?//|url\(["']?https?://"""  # stylesheets and fonts from CSS
    r"""|import\s*\(\s*["']https?://|\bfrom\s+["']https?://""",  # ES modules
    re.IGNORECASE,
)
# What nbconvert's templates add to a notebook page: MathJax from a CDN (or an empty src when
# no URL is set) and a module script that imports Mermaid from a CDN when a page has a
# diagram. The tutorials use neither (their text is Unicode, not TeX).
NOTEBOOK_SCRIPTS = [
    re.compile(r"""<script[^>]*\bsrc=["']?(https?://[^"'\s>]*)?["']?\s*>\s*</script>""", re.IGNORECASE),
    re.compile(r"""<script type=["']module["']>(?:(?!</script>).)*?mermaid(?:(?!</script>).)*?</script>""",
               re.IGNORECASE | re.DOTALL),
    re.compile(r"""<!-- Load mathjax -->|<script type=["']text/x-mathjax-config["']>.*?</script>""",
               re.IGNORECASE | re.DOTALL),
]


LOCAL_LINK = re.compile(r'href="(?![a-z]+:|#|/)([^"#?]+\.(?:md|py))(#[^"]*)?"')


def _is_notebook(page) -> bool:
    return page.file.src_uri.startswith("tutorials/") and page.file.src_uri.endswith(".py")


def on_page_content(content, page, config, files):  # noqa: ARG001
    """Notebook pages: links to other pages as mkdocs writes them (nbconvert leaves `x.md`
    and `02_name.py` as they are), checked like mkdocs checks Markdown links."""
    if not _is_notebook(page):
        return content

    def relink(match):
        path, anchor = match.group(1), match.group(2) or ""
        target = posixpath.normpath(posixpath.join(posixpath.dirname(page.file.src_uri), path))
        f = files.get_file_from_path(target)
        if f is None or not f.is_documentation_page():
            log.warning(f"{page.file.src_uri}: a link to {path!r}, which is not a page of the site")
            return match.group(0)
        return f'href="{f.url_relative_to(page.file)}{anchor}"'

    return LOCAL_LINK.sub(relink, content)


def on_post_page(output, page, config):  # noqa: ARG001
    if _is_notebook(page):
        for pattern in NOTEBOOK_SCRIPTS:
            output = pattern.sub("", output)
    found = EXTERNAL.search(output)
    if found:
        start = max(found.start() - 60, 0)
        log.warning(f"{page.file.src_path}: a resource would be fetched from another host when the page is "
                    f"viewed: {output[start:found.end() + 80]!r}")
    return output
