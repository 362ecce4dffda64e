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


class compilations:
    """Context manager: the names of the XLA computations compiled inside it (JAX's compile log).

    A guard against recompilation that can fail: a learning rate made static, a cache keyed
    on a value, or a new Python function per call all show up as a new "Compiling jit(...)".
    """

    def __enter__(self):
        import logging

        self.names = []
        names = self.names

        class _Handler(logging.Handler):
            def emit(self, record):
                msg = record.getMessage()
                if msg.startswith("Compiling "):
                    names.append(msg.split(" ")[1])

        self._handler = _Handler()
        self._logger = logging.getLogger("jax")
        self._logger.addHandler(self._handler)
        self._ctx = jax.log_compiles(True)
        self._ctx.__enter__()
        return self.names

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        self._logger.removeHandler(self._handler)
        return False
