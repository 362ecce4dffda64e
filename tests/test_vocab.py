"""gd_vocab (chunked W-space GD) against gd_weights and an independent numpy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import particles
from particles._vocab import gd_vocab, vocab_flops


def _problem(N=37, M=23, d=16, seed=0):
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(N, d)) / np.sqrt(d)
    U = rng.normal(size=(M, d)) / np.sqrt(d)
    p = rng.random(N) + 0.1
    p /= p.sum()
    targets = rng.integers(0, M, N)
    return E, U, p, targets


@pytest.mark.parametrize("chunk", [5, 37, 64])
def test_matches_gd_weights(chunk):
    # chunk 5 pads 37 inputs to 40 (p = 0 rows), 37 is one exact chunk, 64 clips to N.
    E, U, p, targets = _problem()
    W0 = np.random.default_rng(1).normal(size=(16, 16)) * 0.3
    prob = particles.Problem.from_embeddings(E, U, p, targets, W0=W0)
    ref = particles.gd_weights(prob, 2.0, 12, save_every=3, save_weights=True)
    got = gd_vocab(E, U, p, targets, 2.0, 12, W0=W0, chunk=chunk, save_every=3)
    np.testing.assert_array_equal(np.asarray(got.steps), np.asarray(ref.steps))
    for name in ("loss", "accuracy", "zero_one", "margins"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(got.W, ref.W[-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.min_margin, np.min(np.asarray(ref.margins), axis=1), rtol=0, atol=1e-12)


def test_matches_numpy_loop():
    # An independent float64 loop on the full score matrix.
    E, U, p, targets = _problem(N=20, M=11, d=8, seed=3)
    W = np.zeros((8, 8))
    Y = np.eye(11)[targets]
    losses = []
    for _ in range(5):
        S = E @ W.T @ U.T
        P = np.exp(S - S.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        losses.append(-(p * np.log(P[np.arange(20), targets])).sum())
        W = W - 0.7 * U.T @ ((P - Y) * p[:, None]).T @ E
    got = gd_vocab(E, U, p, targets, 0.7, 5, chunk=3, save_margins=False)
    np.testing.assert_allclose(got.loss[:5], losses, rtol=1e-13)
    np.testing.assert_allclose(got.W, W, rtol=0, atol=1e-13)
    assert got.margins is None


def test_ties_and_zero_steps():
    # W = 0: every score ties, argmax picks class 0, so accuracy = p(f* = 0); loss = log M.
    E, U, p, targets = _problem(N=10, M=4, d=4, seed=2)
    got = gd_vocab(E, U, p, targets, 1.0, 0)
    assert got.steps.shape == (1,)
    np.testing.assert_allclose(got.loss[0], np.log(4), rtol=1e-14)
    np.testing.assert_allclose(got.accuracy[0], p[targets == 0].sum(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(got.margins[0], 0.0, atol=0)


def test_float32():
    E, U, p, targets = _problem()
    got = gd_vocab(E, U, p, targets, 1.0, 4, dtype=jnp.float32)
    ref = gd_vocab(E, U, p, targets, 1.0, 4)
    assert got.loss.dtype == jnp.float32
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-5)


def test_flops():
    assert vocab_flops(3, 5, 2) == 4 * 3 * 5 * 2 + 4 * 3 * 2 * 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=0.0), "lr"),
        (dict(steps=-1), "steps"),
        (dict(chunk=0), "chunk"),
        (dict(steps=5, save_every=2), "save_every"),
        (dict(targets=np.full(37, 23)), "targets"),
        (dict(p=np.ones(37)), "p"),
        (dict(W0=np.zeros((3, 3))), "W0"),
    ],
)
def test_bad_input(kwargs, match):
    E, U, p, targets = _problem()
    args = dict(E=E, U=U, p=p, targets=targets, lr=1.0, steps=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gd_vocab(**args)
