"""The associative-memory problem: frequencies, targets and the geometry of the embeddings.

Scores are S[x, y] = u_y^T W e_x, i.e. S = E W^T U^T. Gradient descent on W moves S inside
the span of the Gram matrices, S <- S - lr * G_E diag(p) (softmax(S) - Y) G_U, so a problem
is fully described by p, Y, G_E = E E^T, G_U = U U^T and the initial scores S0.
"""

from __future__ import annotations

import warnings
from typing import Literal, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from . import _validate as v

Structure = Literal["identity", "factored", "dense"]


class PrecisionWarning(UserWarning):
    """float32 was requested: late GD updates (of size ~ lr/t) fall below its resolution."""


def default_dtype():
    """float64 when JAX's x64 mode is on (importing particles turns it on), else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _structure(n: int, factor, identity: bool) -> Structure:
    """How a Gram matrix is applied. Factored costs 2nd per column against n^2 for dense."""
    if identity:
        return "identity"
    if factor is not None and 2 * factor.shape[1] < n:
        return "factored"
    return "dense"


class Problem(eqx.Module):
    """A population cross-entropy problem for one associative memory, in score space.

    **Fields:**

    - `p`: input frequencies p(x), shape (N,), summing to 1.
    - `Y`: targets, shape (N, M): one-hot rows for f*(x), or rows of q(y|x).
    - `G_E`: input Gram matrix E E^T, shape (N, N).
    - `G_U`: output Gram matrix U U^T, shape (M, M).
    - `S0`: initial scores, shape (N, M).
    - `E`, `U`: the embeddings, shapes (N, d) and (M, d), when known (else `None`).
    - `W0`: the initial weights, shape (d, d), when known (else `None`; zero when S0 = 0).
    - `offset`: scores that do not come from W, shape (N, M), e.g. a Transformer's direct
      path into the memory's logits (`None`: zero). Weight decay shrinks W, i.e. S − offset.
    - `structure_E`, `structure_U`: how each Gram matrix is applied in a GD step
      (`"identity"`, `"factored"` through E or U, or `"dense"`); chosen by the constructors.

    Build one with [`Problem.from_embeddings`][], [`Problem.from_grams`][] or the named
    geometries ([`orthogonal`][], [`two_particles`][], [`equicorrelated`][],
    [`random_sphere`][]).

    >>> import numpy as np, particles as pt
    >>> E = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # three inputs in the plane
    >>> problem = pt.Problem.from_embeddings(E, np.eye(2), [0.5, 0.3, 0.2], [0, 1, 0])
    >>> problem.N, problem.M, problem.d, [round(g, 6) for g in problem.G_E[1].tolist()]
    (3, 2, 2, [0.6, 1.0, 0.8])
    """

    p: Float[Array, " N"]
    Y: Float[Array, "N M"]
    G_E: Float[Array, "N N"]
    G_U: Float[Array, "M M"]
    S0: Float[Array, "N M"]
    E: Optional[Float[Array, "N d"]] = None
    U: Optional[Float[Array, "M d"]] = None
    W0: Optional[Float[Array, "d d"]] = None
    offset: Optional[Float[Array, "N M"]] = None
    structure_E: Structure = eqx.field(static=True, default="dense")
    structure_U: Structure = eqx.field(static=True, default="dense")

    def __check_init__(self):
        N, M = self.Y.shape
        v.check_shape("p", self.p, (N,))
        v.check_shape("G_E", self.G_E, (N, N))
        v.check_shape("G_U", self.G_U, (M, M))
        v.check_shape("S0", self.S0, (N, M))
        if self.offset is not None:
            v.check_shape("offset", self.offset, (N, M))
        if self.E is not None:
            v.check_shape("E", self.E, (N, None))
        if self.U is not None:
            v.check_shape("U", self.U, (M, None))
        if self.E is not None and self.U is not None and self.E.shape[1] != self.U.shape[1]:
            raise ValueError(
                f"E has d={self.E.shape[1]} columns but U has d={self.U.shape[1]}; "
                "both embeddings must live in the same dimension d."
            )
        for name, s in (("structure_E", self.structure_E), ("structure_U", self.structure_U)):
            if s not in ("identity", "factored", "dense"):
                raise ValueError(f"{name}={s!r} is not allowed: use 'identity', 'factored' or 'dense'.")
        if self.structure_E == "factored" and self.E is None:
            raise ValueError("structure_E='factored' needs the embeddings E.")
        if self.structure_U == "factored" and self.U is None:
            raise ValueError("structure_U='factored' needs the embeddings U.")

    # ----------------------------------------------------------------- sizes
    @property
    def N(self) -> int:
        return self.Y.shape[0]

    @property
    def M(self) -> int:
        return self.Y.shape[1]

    @property
    def d(self) -> Optional[int]:
        if self.E is not None:
            return self.E.shape[1]
        if self.U is not None:
            return self.U.shape[1]
        return None

    @property
    def dtype(self):
        return self.Y.dtype

    @property
    def targets(self) -> Int[Array, " N"]:
        """f*(x): the most likely class of each input (argmax of its target row)."""
        return jnp.argmax(self.Y, axis=-1)

    # ------------------------------------------------------- Gram application
    def direction(self, R: Float[Array, "N M"]) -> Float[Array, "N M"]:
        """G_E R G_U at the cost of the problem's structure (see `particles._dynamics.direction`)."""
        from ._dynamics import direction

        return direction(self, R)

    # --------------------------------------------------------------- dtypes
    def astype(self, dtype) -> "Problem":
        """The same problem in another floating dtype. float32 warns (see `PrecisionWarning`)."""
        dtype = jnp.dtype(dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"dtype={dtype} is not allowed: use float64 (default) or float32.")
        if dtype == jnp.float32:
            warnings.warn(
                "float32 is a speed mode: margins grow like log t and late GD updates "
                "(~ lr/t) fall below float32 resolution, so long runs stall. Use float64 "
                "for results.",
                PrecisionWarning,
                stacklevel=2,
            )
        return jax.tree_util.tree_map(
            lambda a: a.astype(dtype) if eqx.is_array(a) and jnp.issubdtype(a.dtype, jnp.floating) else a,
            self,
        )

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_embeddings(
        cls,
        E: Float[ArrayLike, "N d"],
        U: Float[ArrayLike, "M d"],
        p: Float[ArrayLike, " N"],
        targets: Int[ArrayLike, " N"] | Float[ArrayLike, "N M"],
        W0: Optional[Float[ArrayLike, "d d"]] = None,
        *,
        dtype=None,
    ) -> "Problem":
        """A problem from its embeddings.

        **Arguments:**

        - `E`: input embeddings e_x as rows, shape (N, d).
        - `U`: output embeddings u_y as rows, shape (M, d).
        - `p`: input frequencies, shape (N,), >= 0, summing to 1.
        - `targets`: f*(x) as ints in [0, M), shape (N,); or q(y|x) as rows, shape (N, M).
        - `W0`: initial weights, shape (d, d); zero when omitted. Then S0 = E W0^T U^T
          (S0[x, y] = u_y^T W0 e_x).
        - `dtype`: float64 by default.

        **Returns:** a `Problem` with G_E = E E^T and G_U = U U^T.
        """
        dtype = default_dtype() if dtype is None else dtype
        if np.ndim(E) != 2:
            raise ValueError(f"E has shape {np.shape(E)}; expected a matrix (N, d).")
        if np.ndim(U) != 2:
            raise ValueError(f"U has shape {np.shape(U)}; expected a matrix (M, d).")
        N, d = np.shape(E)
        M = np.shape(U)[0]
        v.check_shape("U", U, (M, d))
        v.check_finite("E", E)
        v.check_finite("U", U)
        E = jnp.asarray(E, dtype)
        U = jnp.asarray(U, dtype)
        p = _frequencies(p, N, dtype)
        Y = _targets(targets, N, M, dtype)
        if W0 is None:
            S0 = jnp.zeros((N, M), dtype)
        else:
            v.check_shape("W0", W0, (d, d))
            v.check_finite("W0", W0)
            W0 = jnp.asarray(W0, dtype)
            S0 = E @ W0.T @ U.T
        return cls(
            p=p,
            Y=Y,
            G_E=E @ E.T,
            G_U=U @ U.T,
            S0=S0,
            E=E,
            U=U,
            W0=W0,
            structure_E=_structure(N, E, False),
            structure_U=_structure(M, U, False),
        )

    @classmethod
    def from_grams(
        cls,
        G_E: Float[ArrayLike, "N N"],
        G_U: Float[ArrayLike, "M M"],
        p: Float[ArrayLike, " N"],
        targets: Int[ArrayLike, " N"] | Float[ArrayLike, "N M"],
        S0: Optional[Float[ArrayLike, "N M"]] = None,
        *,
        dtype=None,
    ) -> "Problem":
        """A problem from its Gram matrices (symmetric positive semi-definite).

        **Arguments:**

        - `G_E`: input Gram matrix, shape (N, N).
        - `G_U`: output Gram matrix, shape (M, M).
        - `p`, `targets`: as in [`Problem.from_embeddings`][].
        - `S0`: initial scores, shape (N, M); zero when omitted.

        **Returns:** a `Problem` without embedding factors (dense Gram application).
        """
        dtype = default_dtype() if dtype is None else dtype
        for name, G in (("G_E", G_E), ("G_U", G_U)):
            if np.ndim(G) != 2 or np.shape(G)[0] != np.shape(G)[1]:
                raise ValueError(f"{name} has shape {np.shape(G)}; expected a square matrix.")
            v.check_finite(name, G)
            if v.is_concrete(G):
                g = np.asarray(G, dtype=np.float64)
                scale = max(1.0, np.abs(g).max())
                if not np.allclose(g, g.T, atol=1e-10 * scale):
                    v.fail(name, G, "a Gram matrix must be symmetric")
                if np.linalg.eigvalsh((g + g.T) / 2).min() < -1e-8 * scale:
                    v.fail(name, G, "a Gram matrix must be positive semi-definite")
        N = np.shape(G_E)[0]
        M = np.shape(G_U)[0]
        p = _frequencies(p, N, dtype)
        Y = _targets(targets, N, M, dtype)
        if S0 is None:
            S0 = jnp.zeros((N, M), dtype)
        else:
            v.check_shape("S0", S0, (N, M))
            v.check_finite("S0", S0)
            S0 = jnp.asarray(S0, dtype)
        return cls(p=p, Y=Y, G_E=jnp.asarray(G_E, dtype), G_U=jnp.asarray(G_U, dtype), S0=S0)


# -------------------------------------------------------------------- helpers
def _frequencies(p, N: int, dtype) -> Array:
    v.check_probability("p", p)
    v.check_shape("p", p, (N,))
    return jnp.asarray(p, dtype)


def _targets(targets, N: int, M: int, dtype) -> Array:
    t = targets
    if np.ndim(t) == 1:
        v.check_shape("targets", t, (N,))
        if not jnp.issubdtype(getattr(t, "dtype", None) or np.asarray(t).dtype, jnp.integer):
            if not v.is_concrete(t):
                raise ValueError("targets are traced floats: pass f*(x) as an integer array under jit/vmap.")
            arr = np.asarray(t)
            if not np.all(arr == np.round(arr)):
                v.fail("targets", t, "f*(x) must be integers in [0, M)")
            t = arr.astype(np.int64)
        if v.is_concrete(t):
            arr = np.asarray(t)
            if np.any(arr < 0) or np.any(arr >= M):
                v.fail("targets", t, f"f*(x) must be integers in [0, {M}) (M={M})")
        if v.is_concrete(t):  # numpy: eagerly, one_hot would compile a kernel
            return jnp.asarray(np.eye(M)[np.asarray(t)], dtype)
        return jax.nn.one_hot(jnp.asarray(t), M, dtype=dtype)
    if np.ndim(t) == 2:
        v.check_shape("targets", t, (N, M))
        if v.is_concrete(t):
            arr = np.asarray(t, dtype=np.float64)
            if not np.all(np.isfinite(arr)) or np.any(arr < 0) or not np.allclose(arr.sum(1), 1, atol=1e-6):
                v.fail("targets", t, "rows of q(y|x) must be finite, >= 0 and sum to 1")
        return jnp.asarray(t, dtype)
    raise ValueError(
        f"targets has shape {np.shape(t)}; expected ints f*(x) of shape ({N},) or q(y|x) of shape ({N}, {M})."
    )
