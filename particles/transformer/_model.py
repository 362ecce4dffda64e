"""The two-layer attention-only Transformer of Bietti et al. (NeurIPS 2023).

Frozen random embeddings E (N, d), positional embeddings P (T, d) and unembeddings
U (N, d), entries N(0, 1/d). One head per layer, W_Q = I, no MLP, no layer norm:

    x_t = e_{z_t} + p_t
    h^l_t = h^{l-1}_t + W_O^l W_V^l sum_{s <= t} a^l_{ts} h^{l-1}_s,
    a^l_{t.} = softmax_s((h^{l-1}_t)^T W_K^l h^{l-1}_s / sqrt(d))
    logits_t = U h^2_t

Parametrisation as in the authors' public code (albietz/transformer-birth,
`ihead_basic_model.py`): attention logits divided by sqrt(d), embeddings and positional
embeddings N(0, 1/d) (`sqrtd_embeddings`), trainable matrices initialised like torch's
`nn.Linear` (entries uniform on [-1/sqrt(d), 1/sqrt(d)]). Training all six matrices
diverges at eta >= 5 (the loss passes 1e5 within 4 steps, in float32 and float64 alike);
the authors' simplified model trains only W_K^1, W_K^2, W_O^2, which is stable at the
paper's step sizes (see `_train.TRAINABLE`).

The Transformer runs in float32 (float64 halves CPU throughput); the particle prediction it
is compared with runs in float64.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

DTYPE = jnp.float32


class Embeddings(eqx.Module):
    """The frozen embeddings: `E` (N, d) tokens, `P` (T, d) positions, `U` (N, d) unembeddings."""

    E: Float[Array, "N d"]
    P: Float[Array, "T d"]
    U: Float[Array, "N d"]

    @property
    def d(self) -> int:
        return self.E.shape[1]


class Weights(eqx.Module):
    """The six d x d matrices W_K, W_V, W_O of layers 1 and 2."""

    WK1: Float[Array, "d d"]
    WV1: Float[Array, "d d"]
    WO1: Float[Array, "d d"]
    WK2: Float[Array, "d d"]
    WV2: Float[Array, "d d"]
    WO2: Float[Array, "d d"]


def embeddings(key: PRNGKeyArray, N: int, T: int, d: int) -> Embeddings:
    kE, kP, kU = jax.random.split(key, 3)
    s = 1.0 / jnp.sqrt(jnp.asarray(d, DTYPE))
    return Embeddings(
        jax.random.normal(kE, (N, d), DTYPE) * s,
        jax.random.normal(kP, (T, d), DTYPE) * s,
        jax.random.normal(kU, (N, d), DTYPE) * s,
    )


def _remap(key: PRNGKeyArray, d: int) -> Float[Array, "d d"]:
    """A random orthogonal matrix: W_O^1 writes the previous token in a fresh subspace."""
    Q, R = jnp.linalg.qr(jax.random.normal(key, (d, d), jnp.float64))
    return (Q * jnp.sign(jnp.diagonal(R))[None, :]).astype(DTYPE)


def ideal_weights(
    emb: Embeddings, key: PRNGKeyArray, beta1: float = 20.0, beta2: float = 20.0, beta_o: float = 0.0
) -> Weights:
    """The ideal associative memories of Bietti et al., Sec. 5 (W_O^2 scaled by `beta_o`).

    - Layer 1, previous-token head: W_K^1 = beta1 sqrt(d) sum_t p_t p_{t-1}^T, so the query p_t
      matches the key p_{t-1}; W_V^1 = I; W_O^1 = Q, a random orthogonal remapping (from
      `key`), so h^1_t = x_t + Q x_{t-1} approximately.
    - Layer 2, induction head: W_K^2 = beta2 sqrt(d) sum_k e_k (Q e_k)^T, so the query e_{z_t}
      matches positions s whose previous token z_{s-1} equals z_t; W_V^2 = I.
    - W_O^2 = beta_o sum_k u_k e_k^T: zero by default (the `wo2` starting point); with
      beta_o > 0 it maps the copied token's embedding to its unembedding.
    """
    d = emb.d
    I = jnp.eye(d, dtype=DTYPE)
    Q = _remap(key, d)
    # sqrt(d) cancels the attention's 1/sqrt(d): beta is the scale of the attention logits.
    root = jnp.sqrt(jnp.asarray(d, DTYPE))
    WK1 = beta1 * root * emb.P[1:].T @ emb.P[:-1]
    WK2 = beta2 * root * emb.E.T @ (emb.E @ Q.T)
    WO2 = beta_o * emb.U.T @ emb.E
    return Weights(WK1, I, Q, WK2, I, WO2)


def refine_previous_token(
    w: Weights, emb: Embeddings, data, key: PRNGKeyArray, steps: int = 400, batch: int = 8, lr: float = 0.05
) -> Weights:
    """Refine the previous-token memory W_K^1 on its own objective (Adam, `steps` steps).

    With d = 64 and T = 256 the outer-product memory sum_t p_t p_{t-1}^T is swamped by the
    token embeddings in x_t = e_{z_t} + p_t: only about a third of positions attend to their
    predecessor. Starting from that memory, minimise the cross-entropy of layer-1 attention
    against the previous position on sampled sequences (only W_K^1 moves); the head then
    points at the previous token at over 90% of positions. Other matrices are unchanged.
    """
    import optax

    T = data.seq_len
    causal = jnp.tril(jnp.ones((T, T), bool))

    def loss(A, tokens):
        X = emb.E[tokens] + emb.P[None, :T]
        logits = jnp.einsum("btd,de,bse->bts", X, A, X) / jnp.sqrt(jnp.asarray(emb.d, X.dtype))
        logp = jax.nn.log_softmax(jnp.where(causal[None], logits, -jnp.inf), axis=-1)
        return -jnp.mean(jnp.diagonal(logp[:, 1:, :-1], axis1=1, axis2=2))

    opt = optax.adam(lr)

    def step(carry, k):
        A, state = carry
        g = jax.grad(loss)(A, data.sample(k, batch).tokens)
        updates, state = opt.update(g, state)
        return (optax.apply_updates(A, updates), state), None

    A0 = w.WK1
    (A, _), _ = jax.lax.scan(step, (A0, opt.init(A0)), jax.random.split(key, steps))
    return eqx.tree_at(lambda m: m.WK1, w, A)


def refine_induction_head(
    w: Weights, emb: Embeddings, data, key: PRNGKeyArray, steps: int = 400, batch: int = 8, lr: float = 0.1
) -> Weights:
    """Refine the induction memory W_K^2 on its own objective (Adam, `steps` steps).

    At d = 64, T = 256 the outer-product memory sum_k e_k (Q e_k)^T is also swamped, by the
    positional and cross terms of h^1. With layer 1 fixed, minimise -log of the layer-2
    attention mass that an induction position t puts on the positions s whose previous
    token z_{s-1} equals z_t (they hold the output to copy); only W_K^2 moves.
    """
    import optax

    T = data.seq_len
    causal = jnp.tril(jnp.ones((T, T), bool))
    after = jnp.tril(jnp.ones((T, T), bool)) & (jnp.arange(T)[None, :] >= 1)

    def loss(A, b):
        h1 = jax.vmap(lambda z: hidden(w, emb, z)[0])(b.tokens)
        logits = jnp.einsum("btd,de,bse->bts", h1, A, h1) / jnp.sqrt(jnp.asarray(emb.d, h1.dtype))
        logp = jax.nn.log_softmax(jnp.where(causal[None], logits, -jnp.inf), axis=-1)
        prev = jnp.concatenate([jnp.full_like(b.tokens[:, :1], -1), b.tokens[:, :-1]], axis=1)
        good = (b.tokens[:, :, None] == prev[:, None, :]) & after[None]
        mass = jax.nn.logsumexp(jnp.where(good, logp, -jnp.inf), axis=-1)
        ind = b.induction
        return -jnp.sum(jnp.where(ind, mass, 0.0)) / jnp.maximum(jnp.sum(ind), 1)

    opt = optax.adam(lr)

    def step(carry, k):
        A, state = carry
        g = jax.grad(loss)(A, data.sample(k, batch))
        updates, state = opt.update(g, state)
        return (optax.apply_updates(A, updates), state), None

    A0 = w.WK2
    (A, _), _ = jax.lax.scan(step, (A0, opt.init(A0)), jax.random.split(key, steps))
    return eqx.tree_at(lambda m: m.WK2, w, A)


def random_weights(key: PRNGKeyArray, d: int) -> Weights:
    """All six matrices uniform on [-1/sqrt(d), 1/sqrt(d)] (torch's `nn.Linear` default, the
    `all` starting point)."""
    ks = jax.random.split(key, 6)
    s = 1.0 / jnp.sqrt(jnp.asarray(d, DTYPE))
    return Weights(*(jax.random.uniform(k, (d, d), DTYPE, -s, s) for k in ks))


def attention(h: Float[Array, "T d"], WK, WV, WO) -> Float[Array, "T d"]:
    """One causal head with W_Q = I: sum_{s<=t} a_ts W_O W_V h_s, a_t. = softmax(h_t^T W_K h_s / sqrt(d))."""
    T, d = h.shape
    logits = h @ (h @ WK.T).T / jnp.sqrt(jnp.asarray(d, h.dtype))  # [t, s] = h_t^T W_K h_s / sqrt(d)
    causal = jnp.tril(jnp.ones((T, T), bool))
    # A finite fill: -inf under `where` gives NaN gradients once logits overflow.
    a = jax.nn.softmax(jnp.where(causal, logits, jnp.finfo(logits.dtype).min), axis=-1)
    return (a @ (h @ WV.T)) @ WO.T


def hidden(w: Weights, emb: Embeddings, tokens: Int[Array, " T"]):
    """(h^1, h^2), each (T, d), for one sequence."""
    T = tokens.shape[0]
    x = emb.E[tokens] + emb.P[:T]
    h1 = x + attention(x, w.WK1, w.WV1, w.WO1)
    h2 = h1 + attention(h1, w.WK2, w.WV2, w.WO2)
    return h1, h2


def layer2_inputs(w: Weights, emb: Embeddings, tokens: Int[Array, "B T"]):
    """What W_O^2 acts on: `(v, b)`, each (B, T, .): v_t = W_V^2 sum_s a^2_ts h^1_s (B, T, d)
    and the direct-path logits b_t = U h^1_t (B, T, N). The logits are b_t + U W_O^2 v_t."""

    def one(z):
        h1 = hidden(w, emb, z)[0]
        return attention(h1, w.WK2, w.WV2, jnp.eye(h1.shape[1], dtype=h1.dtype)), h1 @ emb.U.T

    return jax.vmap(one)(tokens)


def forward(w: Weights, emb: Embeddings, tokens: Int[Array, "B T"]) -> Float[Array, "B T N"]:
    """Next-token logits U h^2_t for a batch of sequences."""
    h2 = jax.vmap(lambda z: hidden(w, emb, z)[1])(tokens)
    return h2 @ emb.U.T


def token_losses(w: Weights, emb: Embeddings, tokens: Int[Array, "B T"]) -> Float[Array, "B T-1"]:
    """Cross-entropy of predicting z_{t+1} at each position t <= T-2."""
    logp = jax.nn.log_softmax(forward(w, emb, tokens)[:, :-1], axis=-1)
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


def probe_scores(w: Weights, emb: Embeddings):
    """The two memory probes, each (N, N).

    - W_O^2: S_O[k, y] = u_y^T W_O^2 W_V^2 e_k (embed -> W_V -> W_O -> unembed); the correct
      class of token k is k (a copied token must be predicted).
    - W_K^2: S_K[k, j] = e_k^T W_K^2 (W_O^1 W_V^1 e_j): the attention score of a query whose
      current token is k against a key that holds the value-mapped (layer-1 written)
      previous token j. The correct key of query k is j = k (an earlier occurrence of k).
    """
    S_O = emb.E @ (w.WO2 @ w.WV2).T @ emb.U.T
    S_K = emb.E @ w.WK2 @ (w.WO1 @ w.WV1) @ emb.E.T
    return S_O, S_K


def probe_margins(S: Float[Array, "N N"]) -> Float[Array, " N"]:
    """margin of row k: S[k, k] - max_{j != k} S[k, j]."""
    N = S.shape[0]
    eye = jnp.eye(N, dtype=bool)
    return jnp.diagonal(S) - jnp.max(jnp.where(eye, -jnp.inf, S), axis=1)
