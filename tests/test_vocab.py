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


# ----------------------------------------------------------------- one dynamics, one loss
def test_target_losses_is_losses_bit_for_bit():
    # The integer-target loss must be the project's `losses` with one-hot rows, to the last bit,
    # including ties (argmax picks the first index) and margins where log_softmax rounds to 0.
    from particles._observables import losses
    from particles._vocab_kernel import target_losses

    rng = np.random.default_rng(4)
    S = rng.normal(size=(3, 9, 7)) * np.array([1.0, 30.0, 60.0])[:, None, None]
    S[0, 0] = 0.0  # a full tie
    t = rng.integers(0, 7, 9)
    got = np.asarray(target_losses(jnp.asarray(S), jnp.broadcast_to(jnp.asarray(t), (3, 9))))
    ref = np.asarray(losses(jnp.asarray(S), jax.nn.one_hot(t, 7, dtype=jnp.float64)))
    np.testing.assert_array_equal(got, ref)


def test_large_margin_loss_keeps_its_digits():
    # Orthogonal embeddings, W0 = 45 I: loss = sum_x p_x log(1 + 5 e^-45) = 5 e^-45 (1.4e-19) to
    # relative 1e-19; the old top + log z - S_t formula returned 0 (1 + 1e-19 rounds to 1).
    E = U = np.eye(6)
    p = np.full(6, 1 / 6)
    got = gd_vocab(E, U, p, np.arange(6), 1.0, 1, W0=45 * np.eye(6), devices=1)
    ref = float(particles.loss(jnp.asarray(45 * np.eye(6)), jnp.asarray(p), jnp.eye(6)))
    np.testing.assert_allclose(got.loss[0], 5 * np.exp(-45.0), rtol=1e-14)
    np.testing.assert_allclose(got.loss[0], ref, rtol=1e-15)


def test_residual_is_target_residual_at_large_margins():
    # The gradient uses the cancellation-free residual: with E = U = I and W = 40 I the gradient
    # is G[y, x] = p_x R[x, y], and its target entries are -p (M - 1) e^-40 / z exactly; the
    # old Z p / z - p left 1 - (1 - 2e-18) = 0 or one ulp of 1 (1e-16, 50x too large).
    from particles._vocab_kernel import chunk_pass

    eye = jnp.eye(3)
    p = jnp.full(3, 1 / 3)
    G, _ = chunk_pass(40 * eye, eye, p, jnp.arange(3), eye, False)
    z = 1 + 2 * np.exp(-40.0)
    np.testing.assert_allclose(np.diag(np.asarray(G)), -(1 / 3) * 2 * np.exp(-40.0) / z, rtol=1e-14)
    off = np.asarray(G)[~np.eye(3, dtype=bool)]
    np.testing.assert_allclose(off, (1 / 3) * np.exp(-40.0) / z, rtol=1e-14)


# ------------------------------------------------------------------------------ layouts
@pytest.mark.parametrize("devices, u_shards", [(2, 1), (2, 2)])
def test_layouts_match_one_device(devices, u_shards):
    # float64; the gradient's sum runs over chunks and devices in another order, so rows differ
    # by a few ulp (measured <= 5e-16); 1e-12 leaves room for 12 steps of amplification.
    E, U, p, targets = _problem()
    W0 = np.random.default_rng(1).normal(size=(16, 16)) * 0.3
    ref = gd_vocab(E, U, p, targets, 2.0, 12, W0=W0, chunk=5, save_every=3, devices=1)
    got = gd_vocab(E, U, p, targets, 2.0, 12, W0=W0, chunk=5, save_every=3, devices=devices, u_shards=u_shards)
    assert got.metadata["devices"] == devices and got.metadata["u_shards"] == u_shards
    for name in ("loss", "accuracy", "zero_one", "min_margin", "margins", "W"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=0, atol=1e-12, err_msg=name)


def test_ties_when_u_is_split():
    # W = 0: every score ties; the first global argmax is class 0 wherever its shard is.
    E, U, p, targets = _problem(N=10, M=5, d=4, seed=2)
    got = gd_vocab(E, U, p, targets, 1.0, 0, devices=2, u_shards=2)
    np.testing.assert_allclose(got.accuracy[0], p[targets == 0].sum(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(got.loss[0], np.log(5), rtol=1e-14)


def test_mixed_precision():
    # float32 scores and softmax, float64 W: rows within float32 round-off of the float64 run.
    E, U, p, targets = _problem()
    ref = gd_vocab(E, U, p, targets, 1.0, 4, devices=1)
    got = gd_vocab(E, U, p, targets, 1.0, 4, devices=1, compute_dtype=jnp.float32)
    assert got.W.dtype == jnp.float64 and got.loss.dtype == jnp.float64
    assert got.metadata["compute_dtype"] == "float32"
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-6)
    np.testing.assert_allclose(got.W, ref.W, rtol=0, atol=1e-6)


def test_save_load_roundtrip(tmp_path):
    from particles import _results

    E, U, p, targets = _problem(N=12, M=5, d=4)
    for margins in (True, False):
        traj = gd_vocab(E, U, p, targets, 1.0, 4, save_every=2, save_margins=margins, devices=1)
        path = tmp_path / f"v{margins}.npz"
        _results.save(path, traj, extra=dict(note="x"))
        back = _results.load(path)
        assert isinstance(back, particles.VocabTrajectory)
        assert back.metadata == traj.metadata
        for name in ("steps", "loss", "accuracy", "zero_one", "min_margin", "margins", "W"):
            a, b = getattr(traj, name), getattr(back, name)
            if a is None:
                assert b is None
            else:
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_plan_chooses_u_shards_from_the_budget():
    from particles._vocab import vocab_plan

    one = vocab_plan(1000, 4000, 64, devices=2, u_shards=1)
    two = vocab_plan(1000, 4000, 64, devices=2, u_shards=2)
    assert two.bytes_per_device < one.bytes_per_device
    assert vocab_plan(1000, 4000, 64, devices=2, memory_budget=one.bytes_per_device).u_shards == 1
    assert vocab_plan(1000, 4000, 64, devices=2, memory_budget=one.bytes_per_device - 1).u_shards == 2
    with pytest.warns(ResourceWarning, match="per device"):
        assert vocab_plan(1000, 4000, 64, devices=2, memory_budget=1e3).u_shards == 2
    assert one.allreduce_bytes == 64 * 64 * 8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(devices=3), "devices=3"),
        (dict(devices=0), "devices=0"),
        (dict(u_shards=3), "u_shards=3"),
        (dict(dtype=jnp.float32, compute_dtype=jnp.float64), "compute_dtype"),
        (dict(dtype=jnp.int32), "dtype"),
        (dict(memory_budget=-1.0), "memory_budget"),
    ],
)
def test_bad_layout(kwargs, match):
    E, U, p, targets = _problem()
    with pytest.raises(ValueError, match=match):
        gd_vocab(E, U, p, targets, 1.0, 2, **kwargs)
