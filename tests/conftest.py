import os
import sys

import jax

# `from helpers import ...` and `from .helpers import ...` both work.
sys.path.insert(0, os.path.dirname(__file__))

# Tests (not doctests) also refuse implicit rank promotion, as diffrax's and equinox's do.
jax.config.update("jax_numpy_rank_promotion", "raise")

import particles  # noqa: E402,F401
