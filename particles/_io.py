"""Result files: atomic writes, plain-JSON conversion and the versions a result depends on.

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupt or a full disk never leaves a truncated file that loads.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import sys
import tempfile
from typing import Any, Callable


def atomic_write(path, write: Callable, suffix: str = "") -> None:
    """Call `write(f)` on a temporary binary file beside `path`, then rename it to `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_savez(path, arrays: dict) -> None:
    """`np.savez` of `arrays` (no pickles), atomically."""
    import numpy as np

    def write(f):
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        f.write(buf.getvalue())

    atomic_write(path, write, ".npz")


def jsonable(x: Any) -> Any:
    """Plain JSON values: arrays to lists, non-finite floats to the strings 'nan'/'inf'/'-inf'."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist") and hasattr(x, "dtype"):
        return jsonable(x.tolist())
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if hasattr(x, "item"):
        return jsonable(x.item())
    return str(x)


def write_json(path, obj: Any) -> None:
    """JSON (see `jsonable`), atomically."""
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode() + b"\n"), ".json")


def versions() -> dict:
    """Python, platform, the packages a result depends on, and the JAX devices."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    import particles

    out["particles"] = particles.__version__
    for pkg in ("jax", "jaxlib", "numpy", "scipy", "diffrax", "equinox", "optax", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    if "jax" in sys.modules:
        import jax

        out["devices"] = [str(d) for d in jax.devices()]
    return out
