"""Eager checks of user input, done before anything is traced or compiled.

Values that are JAX tracers (the call is under `jit` or `vmap`) cannot be inspected in
Python; those checks are skipped, as the public docstrings say.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when `x` holds values Python can read (not a tracer inside jit/vmap)."""
    leaves = jax.tree_util.tree_leaves(x)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def _show(value) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return repr(arr.item())
    if arr.size <= 8:
        return np.array2string(arr, precision=6, separator=", ")
    return f"array of shape {arr.shape}"


def fail(name: str, value, allowed: str) -> None:
    raise ValueError(f"{name}={_show(value)} is not allowed: {allowed}.")


def check_finite(name: str, value) -> None:
    if is_concrete(value):
        arr = np.asarray(value)
        if not np.all(np.isfinite(arr)):
            fail(name, value, "every entry must be finite (no NaN or inf)")


def check_positive(name: str, value) -> None:
    """A finite, strictly positive scalar or array (a learning rate, a horizon)."""
    if is_concrete(value):
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
            fail(name, value, "it must be finite and > 0")


def check_count(name: str, value, minimum: int = 0) -> int:
    """A Python integer >= minimum (a static size such as `steps`)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        fail(name, value, f"it must be a Python int >= {minimum}")
    if value < minimum:
        fail(name, value, f"it must be an int >= {minimum}")
    return int(value)


def check_shape(name: str, value, shape: tuple) -> None:
    """`shape` may hold None for a free axis."""
    got = np.shape(value)
    ok = len(got) == len(shape) and all(s is None or s == g for s, g in zip(shape, got))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} has shape {got}; expected shape {want}.")


def check_probability(name: str, p, tol: float = 1e-6) -> None:
    """A vector of frequencies: finite, >= 0, summing to 1 within `tol`."""
    if np.ndim(p) != 1 or np.shape(p)[0] < 1:
        raise ValueError(f"{name} has shape {np.shape(p)}; expected a non-empty vector (N,).")
    if not is_concrete(p):
        return
    arr = np.asarray(p, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        fail(name, p, "every frequency must be finite")
    if np.any(arr < 0):
        fail(name, p, "every frequency must be >= 0")
    if abs(arr.sum() - 1.0) > tol:
        fail(name, p, f"frequencies must sum to 1 within {tol:g} (they sum to {arr.sum():.12g})")


def check_in_range(name: str, value, lo: float, hi: float) -> None:
    if is_concrete(value):
        arr = np.asarray(value)
        if not np.all(np.isfinite(arr)) or np.any(arr < lo) or np.any(arr > hi):
            fail(name, value, f"it must lie in [{lo:g}, {hi:g}]")


def prng_key(name: str, key):
    """A JAX PRNG key from a key or an integer seed (`0` means `jax.random.key(0)`).

    New-style keys (`jax.random.key`) and raw ones (`jax.random.PRNGKey`) pass through.
    """
    if isinstance(key, bool):
        fail(name, key, "a JAX PRNG key or an integer seed >= 0")
    if isinstance(key, (int, np.integer)):
        if key < 0:
            fail(name, key, "a JAX PRNG key or an integer seed >= 0")
        return jax.random.key(int(key))
    if hasattr(key, "dtype") and (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
                                  or (np.shape(key) == (2,) and np.issubdtype(key.dtype, np.unsignedinteger))):
        return key
    if hasattr(key, "dtype") and np.ndim(key) == 0 and np.issubdtype(key.dtype, np.integer):
        # A traced or array integer seed (e.g. a sweep axis under vmap).
        return jax.random.key(jnp.asarray(key).astype(jnp.uint32))
    fail(name, str(key), "a JAX PRNG key (jax.random.key(seed)) or an integer seed >= 0")


def seed_of(key):
    """A JSON-able record of a key or seed: the int seed, or the key's data as a list."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key)
    if not is_concrete(key):
        return None
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.asarray(data).ravel().tolist()
