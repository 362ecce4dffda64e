"""Settings for every test and doctest, before JAX is imported anywhere.

Two CPU devices (the sharding tests), headless plots, quiet progress bars, and analysis
errors that fail the tests instead of becoming notes in the scripts' summaries.
"""

import gc
import os

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PARTICLES_QUIET", "1")
os.environ.setdefault("PARTICLES_STRICT", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

collect_ignore = ["scripts", "benchmarks", "docs", "build", "site"]


@pytest.fixture(autouse=True)
def _os_exit_raises(monkeypatch):
    """`os._exit` (the explorer's way out while a compilation thread still runs) reached inside
    a test would end the whole session with that code, the remaining tests unrun: raise instead."""

    def leave(code):
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", leave)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Free a module's compiled programs when it ends.

    Each XLA executable maps its code into the process (about 16 memory mappings each, measured).
    The suite compiles thousands in one process, and without this the count passed Linux's limit
    of 65,530 mappings per process (`vm.max_map_count`) about three quarters of the way through,
    where XLA's compiler, unable to map the next program, crashed with a segmentation fault.
    """
    yield
    jax.clear_caches()
    gc.collect()
