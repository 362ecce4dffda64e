"""The sweep engine: grid expansion, GD cell metrics against an independent W-space loop,
chunking/sharding invariance, one compilation per problem size, checkpoint and resume."""

import itertools

import jax
import numpy as np
import pytest

from particles._sweep import (
    SweepInterrupted,
    expand_grid,
    frequencies,
    gd_cell,
    run_chunks,
    sweep_gd,
)


def _reference(n, corr, p, lr, steps):
    """GD on W (numpy, explicit embeddings): the metrics of `gd_cell`, computed independently."""
    a = np.sqrt(1 - corr)
    b = (np.sqrt(1 - corr + n * corr) - a) / n
    E = a * np.eye(n) + b * np.ones((n, n))  # rows e_x, <e_x, e_x'> = corr
    U = np.eye(n)
    Y = np.eye(n)
    W = np.zeros((n, n))

    def scores(W):
        return E @ W.T @ U.T

    def loss(S):
        S = S - S.max(1, keepdims=True)
        logp = S - np.log(np.exp(S).sum(1, keepdims=True))
        return -(p * logp[np.arange(n), np.arange(n)]).sum()

    L = [loss(scores(W))]
    full = []
    for _ in range(steps):
        S = scores(W)
        P = np.exp(S - S.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        W = W - lr * U.T @ (P - Y).T @ np.diag(p) @ E
        S = scores(W)
        L.append(loss(S))
        full.append(np.all(S.argmax(1) == np.arange(n)))
    L = np.array(L)
    first = next((k + 1 for k, f in enumerate(full) if f), -1)
    inc = int(np.sum(L[1:] > L[:-1] * (1 + 1e-10)))
    spike = float(np.max(L - np.minimum.accumulate(L)))
    S = scores(W)
    m = np.array([S[x, x] - np.max(np.delete(S[x], x)) for x in range(n)])
    return dict(first_full_accuracy=first, loss_increases=inc, max_spike=spike, final_loss=L[-1],
                final_min_margin=m.min())


def test_expand_grid_is_c_order_product():
    axes = {"lr": [0.1, 1.0, 10.0], "corr": [0.2, 0.5]}
    flat = expand_grid(axes)
    expected = list(itertools.product(axes["lr"], axes["corr"]))
    assert list(zip(flat["lr"], flat["corr"])) == expected


def test_frequencies():
    p = np.asarray(frequencies(3, log_odds=np.log(4.0)))
    np.testing.assert_allclose(p, [4 / 6, 1 / 6, 1 / 6], rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.asarray(frequencies(2, p1=0.7)), [0.7, 0.3], atol=1e-15)
    np.testing.assert_allclose(np.asarray(frequencies(2)), [2 / 3, 1 / 3], atol=1e-15)


@pytest.mark.parametrize("n,corr,p1,lr", [(2, 0.95, 0.75, 10.0), (2, 0.5, 0.6, 1.0), (3, 0.3, 0.5, 5.0)])
def test_cell_matches_w_space_reference(n, corr, p1, lr):
    steps = 60
    out = jax.jit(gd_cell(n, steps))(dict(lr=lr, corr=corr, p1=p1))
    p = np.concatenate([[p1], np.full(n - 1, (1 - p1) / (n - 1))])
    ref = _reference(n, corr, p, lr, steps)
    assert int(out["first_full_accuracy"]) == ref["first_full_accuracy"]
    assert int(out["loss_increases"]) == ref["loss_increases"]
    np.testing.assert_allclose(float(out["max_spike"]), ref["max_spike"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(out["final_loss"]), ref["final_loss"], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(float(out["final_min_margin"]), ref["final_min_margin"], rtol=1e-9, atol=1e-12)
    assert int(out["status"]) == 0 and int(out["first_bad_step"]) == -1


def test_spiky_cell_is_detected():
    """The paper's benign spike (p1 = 0.75, corr = 0.95, lr = 10) raises the loss."""
    ref = _reference(2, 0.95, np.array([0.75, 0.25]), 10.0, 35)
    assert ref["loss_increases"] >= 1 and ref["max_spike"] > 0.01  # the reference sees it too
    out = jax.jit(gd_cell(2, 35))(dict(lr=10.0, corr=0.95, p1=0.75))
    assert int(out["loss_increases"]) == ref["loss_increases"]


def test_chunking_and_sharding_do_not_change_results_and_compile_once():
    assert len(jax.devices()) == 2  # conftest: two host devices, so chunks are sharded
    traces = []
    base = gd_cell(2, 40)

    def cell(params):
        traces.append(1)
        return base(params)

    params = {k: v for k, v in expand_grid({"lr": [0.5, 2.0, 8.0], "corr": [0.1, 0.6, 0.9]}).items()}
    whole, done = run_chunks(cell, params, chunk_size=9)
    assert done == 1
    traces.clear()
    chunked, done = run_chunks(cell, params, chunk_size=4)  # 3 chunks, the last padded
    assert done == 3 and len(traces) == 1  # one trace for all chunks: nothing recompiles per cell
    for k in whole:
        np.testing.assert_array_equal(whole[k], chunked[k])


def test_non_finite_cells_are_marked_and_the_sweep_continues():
    # Initial scores 1e308 * N(0, 1) overflow to inf in some cells (|z| > 1.8), not in others.
    out = sweep_gd({"lr": [1.0], "seed": [0, 1, 2, 3]}, 5, init_std=1e308).outputs
    bad = out["status"].ravel() != 0
    assert bad.any() and not bad.all()
    assert np.all(out["first_bad_step"].ravel()[bad] == 1) and np.all(out["first_bad_step"].ravel()[~bad] == -1)
    assert np.all(np.isnan(out["final_loss"].ravel()[bad])) and np.all(np.isfinite(out["final_loss"].ravel()[~bad]))


def test_sweep_resume_equals_uninterrupted(tmp_path):
    axes = {"lr": [1.0, 10.0, 30.0], "corr": [0.5, 0.95], "n": [2, 3]}
    full = sweep_gd(axes, 30, chunk_size=2)
    assert full.shape == (3, 2, 2)
    assert full.n_bad == 0

    ck = str(tmp_path / "chunks")
    with pytest.raises(SweepInterrupted):
        sweep_gd(axes, 30, chunk_size=2, checkpoint=ck, stop_after=2)
    assert len(list((tmp_path / "chunks").iterdir())) == 2
    with pytest.raises(ValueError, match="--resume"):
        sweep_gd(axes, 30, chunk_size=2, checkpoint=ck)
    with pytest.raises(ValueError, match="different sweep"):
        sweep_gd(axes, 31, chunk_size=2, checkpoint=ck, resume=True)
    resumed = sweep_gd(axes, 30, chunk_size=2, checkpoint=ck, resume=True)
    assert resumed.chunks_computed == resumed.chunks_total - 2
    for k in full.outputs:
        np.testing.assert_array_equal(full.outputs[k], resumed.outputs[k])


@pytest.mark.parametrize(
    "axes,match",
    [
        ({"corr": [0.5]}, "no 'lr'"),
        ({"lr": [-1.0]}, "lr="),
        ({"lr": [1.0], "p1": [0.5], "log_odds": [1.0]}, "both"),
        ({"lr": [1.0], "bogus": [1.0]}, "bogus"),
        ({"lr": [1.0], "corr": [-0.9], "n": [3]}, "corr="),
        ({"lr": [1.0], "n": [1]}, "n="),
    ],
)
def test_bad_axes(axes, match):
    with pytest.raises(ValueError, match=match):
        sweep_gd(axes, 10)
