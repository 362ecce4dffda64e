"""Mutation testing of the core with cosmic-ray: `make mutation` (through `.ci/mutation`).

For each module group (one cosmic-ray configuration each, `mutation/<group>.toml`: the
modules, the test command, the timeout, the operators left out) this script

1. copies the repository to a temporary folder (cosmic-ray mutates files in place: the
   checkout never holds a mutant), one copy per worker;
2. creates the group's cosmic-ray session (`cosmic_ray.commands.init`) and marks as skipped,
   with the reason, the mutants that cannot change behaviour or are out of scope (see
   `skip_reason`): operators outside the chosen set, the second offset of a number, lines
   of docstrings, of `raise` statements and of message calls (`v.fail`, `warnings.warn`),
   and functions outside the group's `[scope]`; and the mutants that `mutation/equivalent.toml`
   lists (their result is known; they count as survivors; `--run-equivalents` runs them);
3. runs the group's test command on the unmutated copy (the baseline must pass);
4. runs every remaining mutant: cosmic-ray's `mutate_and_test` (mutate the copy, run the
   test command, restore), on `--workers` copies in parallel, each result written to the
   session. The test command runs in a process forked from a worker that has already
   imported numpy, scipy, JAX (not started), equinox, diffrax, optax, matplotlib and
   pytest (2.7x more mutants per hour); `--no-preload` runs it in a fresh interpreter
   instead, cosmic-ray's own way;
5. writes `mutation/REPORT.md`: the score per group and overall, the date and load, and
   every survivor with file:line and the mutation, marked "equivalent" with its reason
   when `mutation/equivalent.toml` lists it.

Usage: python mutation/run.py [--groups a,b] [--workers 2] [--budget 3600] [--no-preload] [--run-equivalents] [--dry-run]
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import datetime
import importlib.metadata
import itertools
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
IGNORE = shutil.ignore_patterns(".git", ".venv", ".hypothesis", ".pytest_cache", ".ruff_cache", "__pycache__",
                                "site", "runs", "figures", "sweeps", "build", "dist", "*.egg-info", "docs",
                                "node_modules")
# Calls whose arguments are only message text.
MESSAGE_CALLS = {"fail", "warn", "print"}
NUMBER = "core/NumberReplacer"
# A survivor listed in equivalent.toml is not run again: it costs a whole test subset (no
# test fails early) and its result is known. It still counts as a survivor in the score.
LISTED = "listed as equivalent in mutation/equivalent.toml"


# ------------------------------------------------------------------ scope
def _line_info(path: Path) -> tuple[dict, set, list]:
    """(line -> enclosing top-level definition name, lines that cannot change behaviour,
    spans of type annotations: never evaluated, under `from __future__ import annotations`)."""
    text = path.read_text()
    tree = ast.parse(text)
    owner, quiet, notes = {}, set(), []
    lines = text.splitlines()

    def col(line, offset):  # ast counts UTF-8 bytes, parso (cosmic-ray) characters
        return len(lines[line - 1].encode()[:offset].decode(errors="ignore"))

    for node in ast.walk(tree):
        found = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            found = [x.annotation for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg]
                     if x is not None and x.annotation is not None] + ([node.returns] if node.returns else [])
        elif isinstance(node, ast.AnnAssign):
            found = [node.annotation]
        notes += [((n.lineno, col(n.lineno, n.col_offset)), (n.end_lineno, col(n.end_lineno, n.end_col_offset)))
                  for n in found]

    def span(node):
        return range(node.lineno, node.end_lineno + 1)

    for top in tree.body:
        name = getattr(top, "name", "<module>")
        if isinstance(top, ast.ClassDef):
            for sub in top.body:
                for line in span(sub):
                    owner[line] = f"{top.name}.{getattr(sub, 'name', '<class>')}"
        for line in span(top):
            owner.setdefault(line, name)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_text(body[0]):
            quiet.update(span(body[0]))  # docstrings
        if _is_text(node) or isinstance(node, ast.Raise):
            quiet.update(span(node))  # attribute docstrings; raise statements (their message)
        if isinstance(node, ast.Call):
            f = node.func
            if (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")) in MESSAGE_CALLS:
                quiet.update(span(node))  # v.fail(name, value, message), warnings.warn(message)
    return owner, quiet, notes


def _is_text(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def skip_reason(mutation, info: dict, scope: dict, excluded) -> str | None:
    """Why a mutant is not run (None: run it)."""
    if excluded is not None and excluded.match(mutation.operator_name):
        return "operator outside the chosen set"
    if mutation.operator_name == NUMBER and mutation.occurrence % 2:
        return "NumberReplacer: one offset (+1) per number"  # when a group runs NumberReplacer at all
    path = str(mutation.module_path)
    owner, quiet, notes = info[path]
    line = mutation.start_pos[0]
    if line in quiet:
        return "docstring, raise statement or message text"
    if any(a <= tuple(mutation.start_pos) < b for a, b in notes):
        return "type annotation (never evaluated)"
    name = owner.get(line, "<module>")
    only = scope.get("functions", {}).get(path)
    if only is not None and name not in only and name.split(".")[0] not in only:
        return f"{name} is outside the group's scope"
    if name in scope.get("exclude-functions", {}).get(path, ()):
        return f"{name} is excluded from the group's scope"
    return None


# ------------------------------------------------------------------ sessions
def load_groups(names):
    groups = {}
    for cfg in sorted(HERE.glob("*.toml")):
        if cfg.stem in ("equivalent",) or (names and cfg.stem not in names):
            continue
        data = tomllib.loads(cfg.read_text())
        if "cosmic-ray" in data and (names or data.get("run", {}).get("default", True)):
            groups[cfg.stem] = (cfg, data)
    missing = set(names or ()) - set(groups)
    if missing:
        sys.exit(f"mutation: no configuration mutation/{sorted(missing)[0]}.toml")
    return groups


def _listed(mutation, sources: dict, known) -> bool:
    """Whether the mutant is one that equivalent.toml lists (its changed line, before and after)."""
    import difflib

    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator

    path = str(mutation.module_path)
    operator = get_operator(mutation.operator_name)(**getattr(mutation, "operator_args", {}))
    mutated = mutate_code(sources[path], operator, mutation.occurrence)
    if mutated is None:
        return False
    diff = "\n".join(difflib.unified_diff(sources[path].split("\n"), mutated.split("\n"), lineterm=""))
    return _equivalent_of(path, *_change(diff), known) is not None


def init_session(name, cfg_path, data, base: Path, sessions: Path, run_equivalents: bool = False):
    from cosmic_ray.commands.init import init
    from cosmic_ray.config import load_config
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkResult, WorkerOutcome

    config = load_config(str(cfg_path))
    modules = [Path(m) for m in config["module-path"]]
    db_path = sessions / f"{name}.sqlite"
    if db_path.exists():
        db_path.unlink()
    here = os.getcwd()
    os.chdir(base)
    try:
        info = {str(m): _line_info(m) for m in modules}
        exclude = config.sub("filters", "operators-filter").get("exclude-operators", ())
        # cosmic-ray's operators-filter semantics: skip an operator that one of the patterns matches
        excluded = re.compile("|".join(f"(?:{e})" for e in exclude)) if exclude else None
        scope = data.get("scope", {})
        sources = {str(m): m.read_text() for m in modules}
        known = [] if run_equivalents else _equivalents()
        with use_db(str(db_path), WorkDB.Mode.create) as db:
            init(modules, db, config.operators_config)
            skipped = {}
            for item in list(db.pending_work_items):
                why = skip_reason(item.mutations[0], info, scope, excluded)
                if why is None and known and _listed(item.mutations[0], sources, known):
                    why = LISTED
                if why is not None:
                    skipped[why] = skipped.get(why, 0) + 1
                    db.set_result(item.job_id, WorkResult(output=f"skipped: {why}", worker_outcome=WorkerOutcome.SKIPPED))
            total, pending = db.num_work_items, len(list(db.pending_work_items))
    finally:
        os.chdir(here)
    return dict(db=db_path, config=config, total=total, pending=pending, listed=skipped.pop(LISTED, 0),
                skipped=skipped)


def reopen_session(name, cfg_path, sessions: Path):
    import sqlite3

    from cosmic_ray.config import load_config
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    db_path = sessions / f"{name}.sqlite"
    if not db_path.exists():
        sys.exit(f"mutation: no session {db_path} to run again")
    skipped, again = {}, []
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        total = db.num_work_items
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                why = (result.output or "").removeprefix("skipped: ")
                skipped[why] = skipped.get(why, 0) + 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                again.append(item.job_id)
    con = sqlite3.connect(db_path)
    con.executemany("DELETE FROM work_results WHERE job_id = ?", [(j,) for j in again])
    con.commit()
    con.close()
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        pending = len(list(db.pending_work_items))
    return dict(db=db_path, config=load_config(str(cfg_path)), total=total, pending=pending,
                listed=skipped.pop(LISTED, 0), skipped=skipped)


# ------------------------------------------------------------------ workers
_COPY = None


# What every test process imports before it reaches the project: a worker imports it once
# and forks one test process per mutant from there, which saves the imports (~2.3 s of a
# 5.8 s test run of the events group; measured: 141 mutants in 150 s against 52). The
# project itself is never imported by the worker: each fork imports the mutated copy afresh.
# JAX is imported but never started (no backend, no threads), so the fork is safe; the tests
# start their backend in the forked process.
PRELOAD = ("numpy", "scipy.linalg", "scipy.integrate", "scipy.optimize", "jax", "jax.numpy", "jax.scipy.linalg",
           "equinox", "diffrax", "optax", "matplotlib", "matplotlib.pyplot", "pytest")


def _worker_init(queue, preload):
    global _COPY
    _COPY = queue.get()
    os.chdir(_COPY)
    # pytest's temporary folders per worker: two workers never clean up each other's
    os.environ["PYTEST_ADDOPTS"] = f"--basetemp={Path(_COPY) / '.pytest-tmp'}"
    if preload:
        import importlib

        import cosmic_ray.mutating

        for name in PRELOAD:
            importlib.import_module(name)
        cosmic_ray.mutating.run_tests = _forked_tests


def _forked_tests(command, timeout):
    """cosmic-ray's `run_tests` for the command `python mutation/launch.py ARGS`, run in a fork
    of this preloaded worker: what `launch.py` does, then `pytest.main(ARGS)`. Same outcomes
    as cosmic-ray's (exit 0 survived, else killed; a timeout kills the process group)."""
    import shlex
    import signal

    from cosmic_ray.work_item import TestOutcome

    # jaxtyping (imported with equinox) is also a pytest plugin, which pytest would like to
    # rewrite the asserts of: it has none the tests rely on.
    args = ["-W", "ignore::pytest.PytestAssertRewriteWarning"] + shlex.split(command)[2:]
    with tempfile.TemporaryFile("w+") as out:
        pid = os.fork()
        if pid == 0:  # the test process
            code = 1
            try:
                os.setsid()
                os.dup2(out.fileno(), 1)
                os.dup2(out.fileno(), 2)
                sys.dont_write_bytecode = True  # a mutant written within the same second still recompiles
                sys.path.insert(0, str(HERE))
                from launch import use_copy

                use_copy(os.getcwd())
                import pytest

                code = pytest.main(args)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(int(code))
        end = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > end:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return TestOutcome.KILLED, "timeout"
            time.sleep(0.05)
        out.seek(0)
        output = out.read()[-20000:]
    code = os.waitstatus_to_exitcode(status)
    return (TestOutcome.SURVIVED if code == 0 else TestOutcome.KILLED), output


def _run_one(job_id, mutations, command, timeout):
    from cosmic_ray.mutating import mutate_and_test

    start = time.monotonic()
    return job_id, mutate_and_test(mutations, command, timeout), time.monotonic() - start


def _test_env(work: Path, python: str) -> None:
    os.environ["PATH"] = str(Path(python).parent) + os.pathsep + os.environ.get("PATH", "")
    # A mutant's tests are compile-bound (a mutated core function recompiles every program
    # that holds it): XLA's backend at -O0 compiles them 1.36x faster (sharpness subset, cold:
    # 58.7 s -> 42.8 s). The baselines run under the same flags and must pass.
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0 "
                                       "--xla_llvm_disable_expensive_passes=true")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["PARTICLES_QUIET"] = "1"
    os.environ["PARTICLES_STRICT"] = "1"
    # Programs a mutant does not touch compile once for the whole run (JAX's persistent
    # cache is keyed on the program itself, so a mutated program never hits an old entry).
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(work / "jax-cache")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    # Equinox's runtime checks (used by diffrax) compile to a host callback by default, and a
    # program with a callback is never cached; as NaN they cache. `flow(throw=False)` never
    # raises from them, and the baseline run checks that the tests pass this way.
    os.environ["EQX_ON_ERROR"] = "nan"


def baseline(command: str, copy: Path, timeout: float, tag: str = "") -> tuple[bool, float, str]:
    import shlex

    start = time.monotonic()
    try:
        out = subprocess.run(shlex.split(command), cwd=copy, capture_output=True, text=True, timeout=timeout,
                             env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                                      PYTEST_ADDOPTS=f"--basetemp={Path(copy) / ('.pytest-tmp-' + tag)}"))
    except subprocess.TimeoutExpired:
        return False, time.monotonic() - start, "timeout"
    return out.returncode == 0, time.monotonic() - start, (out.stdout + out.stderr)[-3000:]


# ------------------------------------------------------------------ report
def _equivalents():
    path = HERE / "equivalent.toml"
    if not path.exists():
        return []
    return tomllib.loads(path.read_text()).get("equivalent", [])


def _change(diff: str) -> tuple[str, str]:
    before = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    after = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return " ".join(before), " ".join(after)


def _equivalent_of(path, before, after, known):
    for e in known:
        if e["file"] == path and e["before"].strip() == before and e["after"].strip() == after:
            return e
    return None


def collect(name, session):
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    out = dict(name=name, killed=0, survived=[], timeouts=0, incompetent=0, not_run=0, run=0)
    known = _equivalents()
    with use_db(str(session["db"]), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            out["run"] += 1
            if result.test_outcome == TestOutcome.SURVIVED:
                m = item.mutations[0]
                before, after = _change(result.diff or "")
                out["survived"].append(dict(file=str(m.module_path), line=m.start_pos[0], operator=m.operator_name,
                                            before=before, after=after,
                                            equivalent=_equivalent_of(str(m.module_path), before, after, known)))
            elif result.test_outcome == TestOutcome.INCOMPETENT:
                out["incompetent"] += 1
            else:
                out["killed"] += 1
                out["timeouts"] += (result.output or "") == "timeout"
        out["not_run"] = len(list(db.pending_work_items))
    return out


def score(killed, survived, incompetent):
    run = killed + survived + incompetent
    return 100.0 * (killed + incompetent) / run if run else float("nan")


def write_report(path: Path, results, sessions, meta):
    lines = ["# Mutation testing report", "",
             f"Written by `make mutation` (`.ci/mutation`, `mutation/run.py`) on {meta['date']}.", "",
             f"- wall time {meta['wall'] / 60:.1f} min with {meta['workers']} workers; load average "
             f"{meta['load_start']} at the start, {meta['load_end']} at the end ({os.cpu_count()} cores); "
             f"CPU time of the test processes {meta['cpu'] / 60:.1f} core-min, i.e. {meta['cpu'] / 120:.1f} min "
             "on 2 idle cores",
             f"- cosmic-ray {meta['cosmic_ray']}; python {sys.version.split()[0]}; budget {meta['budget']:.0f} s",
             *(["- this report: the survivors of an earlier full run (same sessions, same mutated sources) run again "
                "against the tests of this checkout (`--rerun-survivors`); every other result is the earlier run's"]
               if meta.get("rerun") else []),
             "- score = killed / (run + listed equivalent) (a timeout counts as killed, as in cosmic-ray); an "
             "*incompetent* mutant (one that does not even import) counts as killed too; *equivalent* survivors "
             "are listed in `mutation/equivalent.toml` and TESTING.md with the reason they cannot change "
             "behaviour. A listed one is not run again (`--run-equivalents` runs them) and counts as a survivor.",
             ""]
    lines += ["| group | mutants | skipped | listed equivalent | run | killed | survived (equivalent) | not run | "
              "score | score without equivalents | time |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    tot = dict(total=0, skipped=0, listed=0, run=0, killed=0, survived=0, eq=0, not_run=0, inc=0)
    for r in results:
        s = sessions[r["name"]]
        listed = s.get("listed", 0)
        eq = sum(1 for x in r["survived"] if x["equivalent"]) + listed
        sv = len(r["survived"]) + listed
        skipped = sum(s["skipped"].values())
        killed = r["killed"] + r["incompetent"]
        sc = score(r["killed"], sv, r["incompetent"])
        sc_eq = score(r["killed"], sv - eq, r["incompetent"])
        lines.append(f"| {r['name']} | {s['total']} | {skipped} | {listed} | {r['run']} | {killed} | {sv} ({eq}) | "
                     f"{r['not_run']} | {sc:.1f}% | {sc_eq:.1f}% | {s.get('seconds', 0) / 60:.1f} min |")
        for k, v in dict(total=s["total"], skipped=skipped, listed=listed, run=r["run"], killed=r["killed"],
                         survived=sv, eq=eq, not_run=r["not_run"], inc=r["incompetent"]).items():
            tot[k] += v
    lines.append(f"| **all** | {tot['total']} | {tot['skipped']} | {tot['listed']} | {tot['run']} | "
                 f"{tot['killed'] + tot['inc']} | {tot['survived']} ({tot['eq']}) | {tot['not_run']} | "
                 f"**{score(tot['killed'], tot['survived'], tot['inc']):.1f}%** | "
                 f"{score(tot['killed'], tot['survived'] - tot['eq'], tot['inc']):.1f}% | {meta['wall'] / 60:.1f} min |")
    lines += ["", "## Skipped mutants, by reason", ""]
    for r in results:
        s = sessions[r["name"]]
        why = ", ".join(f"{n} {k}" for k, n in sorted(s["skipped"].items(), key=lambda kv: -kv[1]))
        lines.append(f"- {r['name']}: {why}")
    lines += ["", "## Survivors", ""]
    for r in results:
        for x in sorted(r["survived"], key=lambda x: (x["file"], x["line"])):
            tag = f" — equivalent: {x['equivalent']['reason']}" if x["equivalent"] else " — **not explained**"
            lines.append(f"- `{x['file']}:{x['line']}` {x['operator'].split('/')[-1]}: `{x['before']}` → "
                         f"`{x['after']}`{tag}")
    if not any(r["survived"] for r in results):
        lines.append("None.")
    path.write_text("\n".join(lines) + "\n")


def update_testing(path: Path, results, sessions, meta):
    """Rewrite the two generated sections of TESTING.md (between their marker comments)."""
    text = path.read_text()
    listed = sum(sessions[r["name"]].get("listed", 0) for r in results)
    killed = sum(r["killed"] + r["incompetent"] for r in results)
    survived = sum(len(r["survived"]) for r in results) + listed
    eq = sum(1 for r in results for x in r["survived"] if x["equivalent"]) + listed
    run = killed + survived
    not_run = sum(r["not_run"] for r in results)
    def group_score(r):
        return score(r["killed"], len(r["survived"]) + sessions[r["name"]].get("listed", 0), r["incompetent"])

    per = ", ".join(f"{r['name']} {group_score(r):.1f}%" for r in results)
    block = (f"{meta['date']}: **{100 * killed / run:.1f}%** ({killed} of {run} mutants killed; {survived} "
             f"survivors, {eq} of them equivalent ({listed} listed in `mutation/equivalent.toml` and not run "
             f"again); {100 * (killed) / (run - eq):.1f}% of the non-equivalent mutants). "
             f"{run} of the {run + not_run} eligible mutants were run or listed as equivalent within the budget"
             + ("" if not not_run else f"; {not_run} did not (the score is on those that ran)") +
             f". Per group: {per}. Wall time {meta['wall'] / 60:.0f} min on 2 workers at load "
             f"{meta['load_start'].split()[0]}; CPU time of the tests {meta['cpu'] / 120:.0f} min on 2 cores. "
             "Details: `mutation/REPORT.md`.")
    rows = ["| file | mutation | why it cannot change behaviour |", "|---|---|---|"]
    for e in _equivalents():
        rows.append(f"| `{e['file']}` | `{e['before']}` → `{e['after']}` | {e['reason']} |".replace("\n", " "))
    for name, body in (("mutation-score", block), ("mutation-equivalent", "\n".join(rows))):
        start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
        if start in text and end in text:
            text = text[:text.index(start) + len(start)] + "\n" + body + "\n" + text[text.index(end):]
    path.write_text(text)


# ------------------------------------------------------------------ main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", help="comma-separated group names (default: every mutation/*.toml not marked "
                                     "[run] default = false)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", type=float, default=3600.0, help="seconds after which no new mutant starts")
    ap.add_argument("--python", default=sys.executable, help="the interpreter of the project's environment")
    ap.add_argument("--report", default=str(HERE / "REPORT.md"))
    ap.add_argument("--keep", help="keep the work folder (copies, sessions) here instead of a temporary one")
    ap.add_argument("--update-testing", action="store_true",
                    help="also write the score, date and equivalent survivors into TESTING.md")
    ap.add_argument("--no-preload", action="store_true",
                    help="run each mutant's tests in a fresh interpreter (cosmic-ray's own way) instead of a fork")
    ap.add_argument("--run-equivalents", action="store_true",
                    help="also run the mutants that mutation/equivalent.toml lists (they must survive)")
    ap.add_argument("--dry-run", action="store_true", help="create the sessions and count, run nothing")
    ap.add_argument("--rerun-survivors", action="store_true",
                    help="with --keep DIR of an earlier run: run its survivors again against the current tests")
    ap.add_argument("--baseline-only", action="store_true", help="also time each group's tests (twice: cold, warm)")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    load_start = " ".join(f"{x:.1f}" for x in os.getloadavg())
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="particles-mutation-"))
    copies = [work / f"copy{i}" for i in range(max(1, args.workers))]
    sessions_dir = work / "sessions"
    if args.rerun_survivors:
        if not args.keep or not sessions_dir.is_dir():
            sys.exit("mutation: --rerun-survivors needs --keep DIR of an earlier run")
        for c in copies:  # the mutated sources stay those of the earlier run; the tests are new
            for part in ("tests", "mutation"):
                shutil.rmtree(c / part, ignore_errors=True)
                shutil.copytree(ROOT / part, c / part, ignore=IGNORE)
    else:
        if work.exists() and args.keep:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        for c in copies:
            shutil.copytree(ROOT, c, ignore=IGNORE)
        sessions_dir.mkdir()
    _test_env(work, os.path.abspath(args.python))  # absolute: the tests run in the copies

    groups = load_groups(args.groups.split(",") if args.groups else None)
    sessions = {}
    if args.rerun_survivors:
        # The sessions of an earlier run (--keep DIR): its survivors run again against the
        # tests of this checkout; every other result stands (tests only ever kill more).
        for name, (cfg, data) in groups.items():
            sessions[name] = reopen_session(name, cfg, sessions_dir)
            print(f"{name}: {sessions[name]['pending']} survivors to run again", flush=True)
    else:
        with cf.ProcessPoolExecutor(len(copies), mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {name: pool.submit(init_session, name, cfg, data, copies[0], sessions_dir, args.run_equivalents)
                       for name, (cfg, data) in groups.items()}
            for name, fut in futures.items():
                sessions[name] = fut.result()
                s = sessions[name]
                print(f"{name}: {s['total']} mutants, {s['pending']} to run, skipped {sum(s['skipped'].values())}, "
                      f"listed equivalent {s['listed']}", flush=True)
    if args.dry_run:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return 0

    jobs = []
    # The baselines, two at a time (one per copy): each must pass on the unmutated code.
    with cf.ThreadPoolExecutor(len(copies)) as pool:
        names = list(sessions)
        base = dict(zip(names, pool.map(
            lambda i: baseline(sessions[names[i]]["config"].test_command, copies[i % len(copies)],
                               4 * sessions[names[i]]["config"].timeout, names[i]), range(len(names)))))
    for name, s in sessions.items():
        ok, secs, out = base[name]
        print(f"{name}: baseline {'passed' if ok else 'FAILED'} in {secs:.1f} s", flush=True)
        if not ok:
            sys.exit(f"mutation: the baseline of group {name} fails on the unmutated code:\n{out}")
        if args.baseline_only:
            ok, secs, out = baseline(s["config"].test_command, copies[0], 4 * s["config"].timeout, name)
            print(f"{name}: again (warm compilation cache) in {secs:.1f} s", flush=True)
            continue
        s["timeout"] = max(s["config"].timeout, 4 * secs)
        s["seconds"] = 0.0
        from cosmic_ray.work_db import WorkDB, use_db

        with use_db(str(s["db"]), WorkDB.Mode.open) as db:
            jobs += [(name, item) for item in db.pending_work_items]

    # Round-robin over the groups: a run cut short by the budget has sampled every group.
    by_group = {}
    for name, item in jobs:
        by_group.setdefault(name, []).append((name, item))
    jobs = [job for batch in itertools.zip_longest(*by_group.values()) for job in batch if job is not None]
    if args.baseline_only:
        return 0
    deadline = t0 + args.budget
    # Fork test processes from a preloaded worker only where they would run this interpreter
    # and the launcher (every group's command is `python mutation/launch.py ...`).
    preload = not args.no_preload and all(
        s["config"].test_command.startswith("python mutation/launch.py ") for s in sessions.values()) and \
        Path(shutil.which("python")).parent.resolve() == Path(sys.executable).parent.resolve()
    print(f"test processes: {'forked from preloaded workers' if preload else 'fresh interpreters'}", flush=True)
    queue = multiprocessing.get_context("fork").Queue()
    for c in copies:
        queue.put(str(c))
    dbs = {}
    from cosmic_ray.work_db import WorkDB, use_db

    done = 0
    with cf.ProcessPoolExecutor(len(copies), mp_context=multiprocessing.get_context("fork"),
                                initializer=_worker_init, initargs=(queue, preload)) as pool:
        pending, it = {}, iter(jobs)

        def submit():
            if time.monotonic() > deadline:
                return False
            try:
                name, item = next(it)
            except StopIteration:
                return False
            s = sessions[name]
            fut = pool.submit(_run_one, item.job_id, item.mutations, s["config"].test_command, s["timeout"])
            pending[fut] = name
            return True

        for _ in copies:
            submit()
        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                name = pending.pop(fut)
                job_id, result, secs = fut.result()
                sessions[name]["seconds"] += secs / len(copies)
                if name not in dbs:
                    dbs[name] = use_db(str(sessions[name]["db"]), WorkDB.Mode.open).__enter__()
                dbs[name].set_result(job_id, result)
                done += 1
                if done % 25 == 0:
                    print(f"{done}/{len(jobs)} mutants, {(time.monotonic() - t0) / 60:.1f} min", flush=True)
                submit()
    for db in dbs.values():
        db.close()

    results = [collect(name, s) for name, s in sessions.items()]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    meta = dict(cpu=usage.ru_utime + usage.ru_stime, date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), wall=time.monotonic() - t0,
                workers=len(copies), load_start=load_start, load_end=" ".join(f"{x:.1f}" for x in os.getloadavg()),
                cosmic_ray=importlib.metadata.version("cosmic-ray"), budget=args.budget, rerun=args.rerun_survivors)
    write_report(Path(args.report), results, sessions, meta)
    if args.update_testing and not args.groups:  # the default run only
        update_testing(ROOT / "TESTING.md", results, sessions, meta)
    print(Path(args.report).read_text())
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
