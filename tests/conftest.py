import os
import sys

# `from helpers import ...` and `from .helpers import ...` both work.
sys.path.insert(0, os.path.dirname(__file__))

# Before JAX is imported anywhere: two CPU devices (sharding tests), headless plots, quiet bars.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PARTICLES_QUIET", "1")
os.environ.setdefault("PARTICLES_STRICT", "1")  # analysis errors in the scripts fail tests

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import particles  # noqa: E402,F401
