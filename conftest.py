"""Settings for every test and doctest, before JAX is imported anywhere.

Two CPU devices (the sharding tests), headless plots, quiet progress bars, and analysis
errors that fail the tests instead of becoming notes in the scripts' summaries.
"""

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
