"""Problem families a sweep can vary: a name, its axes, and how a point becomes a `Problem`.

A family builds a [`Problem`][] from one grid point. Its *shape axes* (n, m, d) fix array
shapes, so each distinct value compiles once; its *value axes* (corr, p1, log_odds, zipf)
enter the compiled sweep as traced scalars. Any function `f(**values) -> Problem` is a
family too (see [`sweep`][]).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable, Mapping

import jax
import numpy as np

from . import _validate as v
from ._geometry import equicorrelated, frequencies, random_sphere, two_particles
from ._problem import Problem

LAWS = ("p1", "log_odds", "zipf")
"""The frequency laws a family takes as an axis (one at a time; see [`frequencies`][])."""


@dataclasses.dataclass(frozen=True)
class Family:
    """A named problem family.

    **Fields:** `name`; `build(shapes, values, key) -> Problem`; `shape_axes` and
    `value_axes` (the axis names it takes, besides `lr` and `seed`); `defaults` for absent
    shape axes; `two_particles` (True when every point is the paper's two-particle system,
    so the sweep may use the margin-map kernel); `doc` (one line).
    """

    name: str
    build: Callable
    shape_axes: tuple
    value_axes: tuple
    defaults: tuple = ()
    two_particles: bool = False
    doc: str = ""

    def check(self, axes: Mapping[str, np.ndarray]) -> None:
        """Range checks of the concrete axis values, before anything compiles."""
        laws = [k for k in LAWS if k in axes]
        if len(laws) > 1:
            raise ValueError(f"axes has {' and '.join(laws)}: they set the same frequencies; sweep one.")
        for k in self.shape_axes:
            if k in axes and (np.any(axes[k] != np.round(axes[k])) or np.any(axes[k] < 1)):
                raise ValueError(f"{k}={axes[k].tolist()} is not allowed: integers >= 1.")
        if "n" in self.shape_axes and "n" in axes and np.any(axes["n"] < 2) and self.name == "equicorrelated":
            raise ValueError(f"n={axes['n'].tolist()} is not allowed: integers >= 2.")
        if "p1" in axes and np.any((axes["p1"] <= 0) | (axes["p1"] >= 1)):
            raise ValueError(f"p1={axes['p1'].tolist()} is not allowed: frequencies must lie in (0, 1).")
        if "corr" in axes:
            n = int(np.max(axes.get("n", [dict(self.defaults).get("n", 2)])))
            lo = -1.0 / (n - 1) if n > 1 else -1.0
            if np.any(axes["corr"] < lo) or np.any(axes["corr"] > 1):
                raise ValueError(f"corr={axes['corr'].tolist()} is not allowed: it must lie in [{lo:g}, 1] "
                                 f"(equicorrelated unit vectors for n up to {n}).")


def _law(values: dict) -> dict:
    return {k: values[k] for k in LAWS if k in values}


def _equicorrelated(shapes, values, key):
    n = shapes["n"]
    return equicorrelated(n, values.get("corr", 0.0), frequencies(n, **_law(values)))


def _two_particles(shapes, values, key):
    law = _law(values)
    p1 = values["p1"] if "p1" in law else frequencies(2, **law)[0]
    return two_particles(values.get("corr", 0.0), p1)


def _sphere(shapes, values, key):
    n, m, d = shapes["n"], shapes["m"], shapes["d"]
    return random_sphere(key, n, m, d, p=frequencies(n, **_law(values)), targets=np.arange(n) % m)


FAMILIES = {
    "equicorrelated": Family("equicorrelated", _equicorrelated, ("n",), ("corr",) + LAWS, (("n", 2),),
                             doc="n unit inputs with pairwise correlation corr, orthonormal outputs, f*(x) = x"),
    "two_particles": Family("two_particles", _two_particles, (), ("corr",) + LAWS, (), two_particles=True,
                            doc="the paper's 2-D system: e_1 = (1, 0), e_2 = (corr, √(1 − corr²)), U = I"),
    "sphere": Family("sphere", _sphere, ("n", "m", "d"), LAWS, (("n", 8), ("m", None), ("d", None)),
                     doc="random unit-sphere embeddings (key from seed), f*(x) = x mod m; m, d default to n"),
}
"""The named families of [`sweep`][]."""


def of(problem) -> Family:
    """The [`Family`][] for a name or for a function `f(**values) -> Problem`."""
    if isinstance(problem, str):
        if problem not in FAMILIES:
            v.fail("problem", problem, f"a family among {sorted(FAMILIES)} or a function returning a Problem")
        return FAMILIES[problem]
    if not callable(problem):
        v.fail("problem", str(problem), f"a family among {sorted(FAMILIES)} or a function returning a Problem")
    params = inspect.signature(problem).parameters
    takes_key = "key" in params
    values = tuple(k for k in params if k != "key")

    def build(shapes, vals, key):
        out = problem(**vals, key=key) if takes_key else problem(**vals)
        if not isinstance(out, Problem):
            raise ValueError(f"problem returned {type(out).__name__}, not a particles.Problem.")
        return out

    name = getattr(problem, "__name__", "custom")
    return Family(name, build, (), values, doc=f"user function {name}{inspect.signature(problem)}")


def shapes_of(family: Family, point: Mapping[str, float]) -> dict:
    """The shape axes of one grid point, defaults filled in (m and d default to n)."""
    out = {}
    for k, default in family.defaults:
        value = point.get(k, default)
        out[k] = out.get("n") if value is None else int(value)
    return out


def seed_key(seed) -> jax.Array:
    """The key of a grid point's seed (traced under vmap)."""
    return jax.random.key(seed.astype("uint32") if hasattr(seed, "astype") else int(seed))
