"""The two-layer attention-only Transformer of Bietti et al. (2023), in JAX.

As in the authors' simplified model (`ihead_basic_model.py` of albietz/transformer-birth):
token embeddings e_z and random absolute position embeddings p_t, one head per layer with
W_Q = I, attention logits divided by sqrt(d), a causal mask that includes the diagonal, a
residual stream, no layer norm and no MLP, and an output matrix U:

    x_t = e_{z_t} + p_t
    h^l_t = h^{l-1}_t + W_O^l W_V^l sum_{s <= t} a^l_{ts} h^{l-1}_s,
    a^l_{t.} = softmax_s(h^{l-1}_t . W_K^l h^{l-1}_s / sqrt(d))
    logits_t = U h^2_t

Initialisation (the authors' defaults): e_z, p_t ~ N(0, I) (N(0, I/d) with
`sqrtd_embeddings`); every d x d matrix and U uniform on [-1/sqrt(d), 1/sqrt(d)] (torch's
`nn.Linear`, variance 1/(3d)). The authors train W_K^1, W_K^2, W_O^2 and keep W_V^1, W_O^1,
W_V^2 at their random init; their README freezes the embeddings and U too.

The Transformer runs in float32 (float64 halves CPU throughput; the batch loss is noisy
far above float32 resolution); the particle prediction it is compared with runs in float64.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .. import _validate as v

DTYPE = jnp.float32
MATRICES = ("WK1", "WV1", "WO1", "WK2", "WV2", "WO2")
# What SGD may move: the six matrices and the embeddings E and U (the positional
# embeddings are a buffer in the authors' model, never trained).
TRAINABLE_NAMES = ("E", "U") + MATRICES
OUTPUT_INITS = ("linear", "normal")
VALUES = ("random", "identity")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture and initialisation switches (defaults: the authors' code).

    **Fields:**

    - `d`: embedding dimension (64 in the paper's `wo2` runs).
    - `sqrtd_embeddings`: e_z, p_t ~ N(0, I/d) instead of N(0, I) (the authors' switch,
      off by default).
    - `output_init`: "linear" (U uniform on ±1/sqrt(d), torch's `nn.Linear`) or
      "normal" (U ~ N(0, I/d), the project's choice before issue #14).
    - `values`: "random" (W_V^1, W_O^1, W_V^2 at `nn.Linear` init, the authors' frozen
      matrices) or "identity" (W_V^1 = W_V^2 = I and W_O^1 a random orthogonal matrix:
      the project's choice before issue #14, which makes W_O^2 read clean token embeddings).
    - `attention_sqrtd`: divide attention logits by sqrt(d) (the authors' default; their
      `no_sqrtd` switch turns it off).

    >>> ModelConfig(d=8).to_dict()["output_init"]
    'linear'
    """

    d: int = 64
    sqrtd_embeddings: bool = False
    output_init: str = "linear"
    values: str = "random"
    attention_sqrtd: bool = True

    def __post_init__(self):
        v.check_count("d", self.d, 1)
        if self.output_init not in OUTPUT_INITS:
            v.fail("output_init", self.output_init, f"use one of {OUTPUT_INITS}")
        if self.values not in VALUES:
            v.fail("values", self.values, f"use one of {VALUES}")
        for name in ("sqrtd_embeddings", "attention_sqrtd"):
            if not isinstance(getattr(self, name), bool):
                v.fail(name, getattr(self, name), "True or False")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Params(eqx.Module):
    """Every array of the model: `E` (N, d), `P` (T, d), `U` (N, d) and the six (d, d)
    matrices W_K, W_V, W_O of layers 1 and 2 (torch layout: a layer maps h to W h)."""

    E: Float[Array, "N d"]
    P: Float[Array, "T d"]
    U: Float[Array, "N d"]
    WK1: Float[Array, "d d"]
    WV1: Float[Array, "d d"]
    WO1: Float[Array, "d d"]
    WK2: Float[Array, "d d"]
    WV2: Float[Array, "d d"]
    WO2: Float[Array, "d d"]

    @property
    def d(self) -> int:
        return self.E.shape[1]

    def replace(self, **arrays) -> "Params":
        """A copy with some arrays replaced (by name)."""
        names = list(arrays)
        return eqx.tree_at(lambda m: [getattr(m, n) for n in names], self, [arrays[n] for n in names])


def _orthogonal(key: PRNGKeyArray, d: int) -> Float[Array, "d d"]:
    Q, R = np.linalg.qr(np.asarray(jax.random.normal(key, (d, d), jnp.float32), np.float64))
    return jnp.asarray(Q * np.sign(np.diagonal(R))[None, :], DTYPE)


def init_params(config: ModelConfig, key: PRNGKeyArray, N: int, T: int) -> Params:
    """The random initialisation of [`ModelConfig`][] for a vocabulary N and T positions.

    >>> p = init_params(ModelConfig(d=8), jax.random.key(0), N=5, T=4)
    >>> p.E.shape, p.P.shape, p.U.shape, p.WO2.shape
    ((5, 8), (4, 8), (5, 8), (8, 8))
    """
    d = config.d
    kE, kP, kU, kW, kQ = jax.random.split(key, 5)
    # Python floats: a numpy float64 scalar would promote the float32 arrays under x64.
    emb = float(1.0 / np.sqrt(d)) if config.sqrtd_embeddings else 1.0
    bound = float(1.0 / np.sqrt(d))
    if config.output_init == "linear":
        U = jax.random.uniform(kU, (N, d), DTYPE, -bound, bound)
    else:
        U = jax.random.normal(kU, (N, d), DTYPE) * bound
    W = {n: jax.random.uniform(k, (d, d), DTYPE, -bound, bound) for n, k in zip(MATRICES, jax.random.split(kW, 6))}
    if config.values == "identity":
        W.update(WV1=jnp.eye(d, dtype=DTYPE), WO1=_orthogonal(kQ, d), WV2=jnp.eye(d, dtype=DTYPE))
    return Params(jax.random.normal(kE, (N, d), DTYPE) * emb, jax.random.normal(kP, (T, d), DTYPE) * emb, U, **W)


def attention(h: Float[Array, "T d"], WK, WV, WO, sqrtd: bool = True) -> Float[Array, "T d"]:
    """One causal head with W_Q = I: sum_{s<=t} a_ts W_O W_V h_s, a_t. = softmax(h_t . W_K h_s / sqrt(d)).

    >>> h = jnp.ones((3, 2)); I = jnp.eye(2)
    >>> attention(h, I, I, I).shape
    (3, 2)
    """
    T, d = h.shape
    logits = h @ (h @ WK.T).T  # [t, s] = h_t . W_K h_s
    if sqrtd:
        logits = logits / jnp.sqrt(jnp.asarray(d, h.dtype))
    causal = jnp.tril(jnp.ones((T, T), bool))
    # A finite fill: -inf under `where` gives NaN gradients once logits overflow.
    a = jax.nn.softmax(jnp.where(causal, logits, jnp.finfo(logits.dtype).min), axis=-1)
    return (a @ (h @ WV.T)) @ WO.T


def hidden(p: Params, tokens: Int[Array, " T"], sqrtd: bool = True):
    """(h^1, h^2), each (T, d), for one sequence of T tokens."""
    T = tokens.shape[0]
    x = p.E[tokens] + p.P[:T]
    h1 = x + attention(x, p.WK1, p.WV1, p.WO1, sqrtd)
    h2 = h1 + attention(h1, p.WK2, p.WV2, p.WO2, sqrtd)
    return h1, h2


def forward(p: Params, tokens: Int[Array, "B T"], sqrtd: bool = True) -> Float[Array, "B T N"]:
    """Next-token logits U h^2_t for a batch of sequences (B, T) -> (B, T, N).

    >>> p = init_params(ModelConfig(d=8), jax.random.key(0), N=5, T=4)
    >>> forward(p, jnp.zeros((2, 4), jnp.int32)).shape
    (2, 4, 5)
    """
    h2 = jax.vmap(lambda z: hidden(p, z, sqrtd)[1])(tokens)
    return h2 @ p.U.T


def layer2_inputs(p: Params, tokens: Int[Array, "B T"], sqrtd: bool = True):
    """What W_O^2 acts on, for a batch: `(v, b)` with v_t = W_V^2 sum_s a^2_ts h^1_s (B, T, d)
    and the direct-path logits b_t = U h^1_t (B, T, N); the logits are b_t + U W_O^2 v_t.

    Neither depends on W_O^2: with every other matrix frozen, W_O^2 is a linear associative
    memory with inputs v_t and output embeddings U (see `_predict`).

    >>> p = init_params(ModelConfig(d=8), jax.random.key(0), N=5, T=4)
    >>> vt, bt = layer2_inputs(p, jnp.zeros((2, 4), jnp.int32))
    >>> vt.shape, bt.shape
    ((2, 4, 8), (2, 4, 5))
    """

    def one(z):
        h1 = hidden(p, z, sqrtd)[0]
        return attention(h1, p.WK2, p.WV2, jnp.eye(h1.shape[1], dtype=h1.dtype), sqrtd), h1 @ p.U.T

    return jax.vmap(one)(tokens)


def probe_scores(p: Params, key_tokens=None):
    """The two memory probes of the authors' code.

    - W_O^2 (their `test_wo1`): S_O[k, y] = u_y . W_O^2 W_V^2 e_k, shape (N, N); the
      correct class of row k is k (a copied token must be predicted).
    - W_K^2 (their `test_wk1`): S_K[i, j] = e_a . W_K^2 W_O^1 W_V^1 e_b for a, b in
      `key_tokens` (the fixed triggers; all N tokens when None), shape (n, n): the
      attention score of a query whose token is a against a key written by layer 1 for a
      previous token b. The correct key of row i is column i.

    >>> p = init_params(ModelConfig(d=8), jax.random.key(0), N=5, T=4)
    >>> [s.shape for s in probe_scores(p, jnp.array([0, 2]))]
    [(5, 5), (2, 2)]
    """
    S_O = p.E @ (p.WO2 @ p.WV2).T @ p.U.T
    Ek = p.E if key_tokens is None else p.E[key_tokens]
    S_K = Ek @ p.WK2 @ (p.WO1 @ p.WV1) @ Ek.T
    return S_O, S_K


def probe_margins(S: Float[Array, "n n"]) -> Float[Array, " n"]:
    """The margin of each row k: S[k, k] − max_{j ≠ k} S[k, j].

    >>> probe_margins(jnp.array([[2.0, 1.0], [0.0, -1.0]])).tolist()
    [1.0, -1.0]
    """
    n = S.shape[0]
    eye = jnp.eye(n, dtype=bool)
    return jnp.diagonal(S) - jnp.max(jnp.where(eye, -jnp.inf, S), axis=1)


# ------------------------------------------------------------- ideal key memories
def ideal_keys(p: Params, beta1: float = 20.0, beta2: float = 20.0) -> Params:
    """The outer-product key memories of Bietti et al., Sec. 5, for the frozen W_V^1, W_O^1.

    - W_K^1 = c1 sum_t p_t p_{t-1}^T: the query p_t matches the key p_{t-1} (a
      previous-token head).
    - W_K^2 = c2 sum_k e_k (R e_k)^T with R = W_O^1 W_V^1: the query e_{z_t} matches a
      position s where layer 1 wrote R e_{z_{s-1}} with z_{s-1} = z_t (an induction head).

    c1, c2 make the matching attention logit about `beta1`, `beta2` (they divide by the mean
    squared norms, so one beta serves N(0, I) and N(0, I/d) embeddings). Other arrays are
    unchanged.

    >>> p = init_params(ModelConfig(d=8), jax.random.key(0), N=5, T=4)
    >>> ideal_keys(p).WK1.shape
    (8, 8)
    """
    d = p.d
    root = float(np.sqrt(d))
    P, E = p.P, p.E
    R = p.WO1 @ p.WV1
    RE = E @ R.T
    nP = jnp.mean(jnp.sum(P * P, -1))
    nE = jnp.mean(jnp.sum(E * E, -1))
    nR = jnp.mean(jnp.sum(RE * RE, -1))
    WK1 = beta1 * root * P[1:].T @ P[:-1] / nP**2
    WK2 = beta2 * root * E.T @ RE / (nE * nR)
    return p.replace(WK1=WK1.astype(DTYPE), WK2=WK2.astype(DTYPE))


def refine_keys(p: Params, data, key: PRNGKeyArray, steps: int = 300, batch: int = 8, lr1: float = 0.2,
                lr2: float = 0.1, sqrtd: bool = True) -> Params:
    """Refine the two key memories on their own attention objectives with Adam.

    With d = 64 and T = 256 the outer-product memories are swamped by cross-talk in the
    residual stream. W_K^1 minimises the cross-entropy of layer-1 attention against the
    previous position; then W_K^2 minimises −log of the layer-2 attention mass that a
    position t whose next token is counted (`counts[t + 1] >= 2`) puts on positions s with
    z_{s−1} = z_t (those hold the output to copy). Only W_K^1, then only W_K^2, move.
    """
    import optax

    from . import _data

    T = data.seq_len
    causal = jnp.tril(jnp.ones((T, T), bool))
    scale = float(1.0 / np.sqrt(p.d)) if sqrtd else 1.0

    def loss1(A, tokens, counts):
        X = p.E[tokens] + p.P[None, :T]
        logits = jnp.einsum("btd,de,bse->bts", X, A, X) * scale
        logp = jax.nn.log_softmax(jnp.where(causal[None], logits, -jnp.inf), axis=-1)
        return -jnp.mean(jnp.diagonal(logp[:, 1:, :-1], axis1=1, axis2=2))

    def loss2(A, tokens, counts, w):
        h1 = jax.vmap(lambda z: hidden(w, z, sqrtd)[0])(tokens)
        logits = jnp.einsum("btd,de,bse->bts", h1, A, h1) * scale
        logp = jax.nn.log_softmax(jnp.where(causal[None], logits, -jnp.inf), axis=-1)
        prev = jnp.concatenate([jnp.full_like(tokens[:, :1], -1), tokens[:, :-1]], axis=1)
        good = (tokens[:, :, None] == prev[:, None, :]) & causal[None] & (jnp.arange(T)[None, None, :] >= 1)
        mass = jax.nn.logsumexp(jnp.where(good, logp, -jnp.inf), axis=-1)
        on = counts[:, 1:] >= 2
        return -jnp.sum(jnp.where(on, mass, 0.0)) / jnp.maximum(jnp.sum(on), 1)

    def fit(A0, lr, loss, k, *extra):
        opt = optax.adam(lr)

        def step(carry, kk):
            A, state = carry
            tokens, counts = _data.sample(data, kk, batch)
            g = jax.grad(loss)(A, tokens[:, :T], counts, *extra)
            updates, state = opt.update(g, state)
            return (optax.apply_updates(A, updates), state), None

        (A, _), _ = jax.lax.scan(step, (A0, opt.init(A0)), jax.random.split(k, steps))
        return A

    k1, k2 = jax.random.split(key)
    p = p.replace(WK1=fit(p.WK1, lr1, loss1, k1))
    return p.replace(WK2=fit(p.WK2, lr2, loss2, k2, p))
