"""One tolerance helper for the suite (float64 unless stated)."""

import jax
import jax.numpy as jnp
import numpy as np


def tree_allclose(x, y, *, rtol=0.0, atol=1e-12) -> bool:
    """True when two pytrees have the same structure and all leaves agree within tolerance."""
    xs, xt = jax.tree_util.tree_flatten(x)
    ys, yt = jax.tree_util.tree_flatten(y)
    if xt != yt:
        return False
    return all(np.shape(a) == np.shape(b) and np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)
               for a, b in zip(xs, ys))


def max_abs(x, y) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(x) - jnp.asarray(y))))
