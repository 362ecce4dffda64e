"""The Transformer validation: model, data, ideal memories, training, prediction, script."""

import importlib.util
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import particles
from particles import transformer as pt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    spec = importlib.util.spec_from_file_location("transformer_script", os.path.join(ROOT, "scripts", "transformer.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _reference_logits(w, emb, tokens):
    """Loops over positions in float64 numpy, straight from the model's equations."""
    E, P, U = (np.asarray(a, np.float64) for a in (emb.E, emb.P, emb.U))
    W = {k: np.asarray(getattr(w, k), np.float64) for k in ("WK1", "WV1", "WO1", "WK2", "WV2", "WO2")}
    T = len(tokens)
    x = np.stack([E[tokens[t]] + P[t] for t in range(T)])

    def layer(h, WK, WV, WO):
        out = np.zeros_like(h)
        for t in range(T):
            s = np.array([h[t] @ WK @ h[j] for j in range(t + 1)]) / np.sqrt(h.shape[1])
            a = np.exp(s - s.max())
            a /= a.sum()
            out[t] = h[t] + WO @ WV @ sum(a[j] * h[j] for j in range(t + 1))
        return out

    h1 = layer(x, W["WK1"], W["WV1"], W["WO1"])
    h2 = layer(h1, W["WK2"], W["WV2"], W["WO2"])
    return np.stack([U @ h2[t] for t in range(T)])


def test_forward_matches_loop_reference():
    N, T, d = 5, 6, 4
    emb = pt.embeddings(jax.random.key(0), N, T, d)
    w = pt.random_weights(jax.random.key(1), d)
    w = jax.tree_util.tree_map(lambda a: 2.0 * a, w)  # sharper attention than at init
    tokens = np.array([[0, 3, 1, 3, 4, 2], [4, 4, 0, 1, 2, 0]])
    got = np.asarray(pt.forward(w, emb, jnp.asarray(tokens)))
    for b in range(2):
        ref = _reference_logits(w, emb, tokens[b])
        np.testing.assert_allclose(got[b], ref, rtol=0, atol=2e-5)  # float32 model


def test_probe_scores_match_definitions():
    emb = pt.embeddings(jax.random.key(0), 7, 5, 6)
    w = pt.random_weights(jax.random.key(1), 6)
    S_O, S_K = (np.asarray(a, np.float64) for a in pt.probe_scores(w, emb))
    E, U = np.asarray(emb.E, np.float64), np.asarray(emb.U, np.float64)
    W = {k: np.asarray(getattr(w, k), np.float64) for k in ("WK2", "WV1", "WO1", "WV2", "WO2")}
    for k in range(7):
        for j in range(7):
            assert abs(S_O[k, j] - U[j] @ W["WO2"] @ W["WV2"] @ E[k]) < 1e-5
            assert abs(S_K[k, j] - E[k] @ W["WK2"] @ W["WO1"] @ W["WV1"] @ E[j]) < 1e-5
    m = np.asarray(pt.probe_margins(jnp.asarray(S_O)))
    for k in range(7):
        assert abs(m[k] - (S_O[k, k] - np.max(np.delete(S_O[k], k)))) < 1e-12


def test_data_statistics_match_specification():
    data = pt.synthetic(3, N=12, support=4, seq_len=40, n_triggers=2, pool=4)
    B = 600
    b = eqx.filter_jit(lambda d, k: d.sample(k, B))(data, jax.random.key(5))
    z, trig, out, ind = (np.asarray(a) for a in (b.tokens, b.triggers, b.outputs, b.induction))
    uni, big = np.asarray(data.unigram, np.float64), np.asarray(data.bigram, np.float64)
    frequent = np.argsort(-uni, kind="stable")[:4]
    counts = np.zeros((12, 12))
    for s in range(B):
        assert len(set(trig[s])) == 2 and set(trig[s]) <= set(frequent)
        omap = dict(zip(trig[s], out[s]))
        seen = set()
        for t in range(40):
            if t < 39 and z[s, t] in omap:
                assert z[s, t + 1] == omap[z[s, t]]
            elif t < 39:
                counts[z[s, t], z[s, t + 1]] += 1
            assert ind[s, t] == (t < 39 and z[s, t] in omap and z[s, t] in seen)
            seen.add(z[s, t])
    # First tokens ~ unigram; non-trigger transitions ~ bigram rows (within 5 sigma).
    first = np.bincount(z[:, 0], minlength=12) / B
    assert np.all(np.abs(first - uni) <= 5 * np.sqrt(uni * (1 - uni) / B) + 1e-3)
    for i in range(12):
        n = counts[i].sum()
        if n >= 200:
            f = counts[i] / n
            assert np.all(np.abs(f - big[i]) <= 5 * np.sqrt(big[i] * (1 - big[i]) / n) + 1e-3)
            assert np.all(f[big[i] == 0] == 0)


def test_synthetic_and_text_statistics(tmp_path):
    data = pt.synthetic(0, N=20, zipf_a=1.0, support=5)
    uni = np.asarray(data.unigram, np.float64)
    ref = 1.0 / np.arange(1, 21)
    np.testing.assert_allclose(uni, ref / ref.sum(), rtol=1e-6)
    big = np.asarray(data.bigram, np.float64)
    assert np.all((big > 0).sum(1) == 5)
    np.testing.assert_allclose(big.sum(1), 1, atol=1e-6)
    path = tmp_path / "t.txt"
    path.write_text("abab ab")
    td = pt.from_text(path, N=5, pool=2, n_triggers=1)
    u = np.asarray(td.unigram, np.float64)
    np.testing.assert_allclose(u[:3], [3 / 7, 3 / 7, 1 / 7], atol=1e-7)  # a, b, space
    np.testing.assert_allclose(np.asarray(td.bigram)[0, 1], 1.0)  # a is always followed by b


def test_ideal_memories_induction_accuracy():
    data = pt.synthetic(0, N=65, seq_len=64)
    emb = pt.embeddings(jax.random.key(1), 65, 64, 256)
    w = pt.ideal_weights(emb, jax.random.key(2), 20.0, 20.0, 20.0)
    b = eqx.filter_jit(lambda d, k: d.sample(k, 32))(data, jax.random.key(0))
    pred = np.asarray(jnp.argmax(pt.forward(w, emb, b.tokens), -1))[:, :-1]
    ind = np.asarray(b.induction)[:, :-1]
    assert ind.sum() > 100
    assert (pred == np.asarray(b.tokens)[:, 1:])[ind].mean() > 0.95


def _tiny(train="wo2", **kw):
    base = dict(train=train, d=16, lrs=(1.0, 2.0), steps=6, batch=4, seq_len=32, N=12, pool=4, n_triggers=2,
                refine_steps=0)
    base.update(kw)
    return pt.Config(**base)


@pytest.fixture(scope="module")
def wo2_run():
    c = _tiny("wo2", steps=10)
    s = pt.setup(c, n_stat_sequences=256)
    return c, s, pt.train(c, s, progress=False)


def test_training_lowers_loss(wo2_run):
    c, s, out = wo2_run
    assert out["loss"].shape == (2, 10) and out["margins_O"].shape == (2, 11, 12)
    np.testing.assert_array_equal(out["loss"], out["induction_loss"])  # the default objective
    held = s.data.sample(jax.random.key(123), 64)
    ind = np.asarray(held.induction)[:, :-1]

    def ind_loss(w):
        return np.asarray(pt.token_losses(w, s.emb, held.tokens))[ind].mean()

    before = ind_loss(s.w0)
    for i in range(2):
        assert ind_loss(jax.tree_util.tree_map(lambda a: a[i], out["weights"])) < before


def test_wo2_step_is_the_gradient_of_the_induction_loss(wo2_run):
    """One logged SGD step equals autodiff of the induction loss through the full forward pass."""
    c, s, out = wo2_run
    b = s.data.sample(jax.random.fold_in(jax.random.fold_in(jax.random.key(c.seed), 7), 0), c.batch)
    ind = b.induction[:, :-1]

    def loss(WO2):
        ce = pt.token_losses(eqx.tree_at(lambda m: m.WO2, s.w0, WO2), s.emb, b.tokens)
        return jnp.sum(jnp.where(ind, ce, 0.0)) / jnp.sum(ind)

    assert float(jnp.sum(ind)) > 0
    np.testing.assert_allclose(out["loss"][:, 0], float(loss(s.w0.WO2)), rtol=1e-5)
    g = jax.grad(loss)(s.w0.WO2)
    # After 10 steps the weights moved; re-run one step to compare with the first update.
    c1 = _tiny("wo2", steps=1)
    out1 = pt.train(c1, s, progress=False)
    for i, lr in enumerate(c1.lrs):
        np.testing.assert_allclose(np.asarray(out1["weights"].WO2[i]), np.asarray(s.w0.WO2 - lr * g), atol=1e-6)


def test_pool_problem_is_exact(wo2_run):
    """Particles on the pool: scores at any W_O^2 equal the Transformer's logits at the pool's
    induction positions (brute force through the forward pass), and probe rows the W_O^2 probe."""
    c, s, out = wo2_run
    key = jax.random.key(9)
    prob, n_pool = pt.pool_problem(s, 16, None, key=key, batch=16)
    assert isinstance(prob, particles.Problem) and prob.N == n_pool + 12 and prob.M == 12
    np.testing.assert_allclose(np.asarray(prob.p).sum(), 1.0, atol=1e-12)
    assert np.all(np.asarray(prob.p)[n_pool:] == 0)
    w1 = jax.tree_util.tree_map(lambda a: a[1], out["weights"])
    W = np.asarray(w1.WO2, np.float64) - np.asarray(s.w0.WO2, np.float64)
    S = np.asarray(prob.S0) + np.asarray(prob.E) @ W.T @ np.asarray(prob.U).T  # scores at W_O^2 = w1.WO2
    b = s.data.sample(jax.random.fold_in(key, 0), 16)
    logits = np.asarray(pt.forward(w1, s.emb, b.tokens), np.float64)
    ind = np.asarray(b.induction)
    np.testing.assert_allclose(S[:n_pool], logits[ind], atol=2e-4)
    S_probe = np.asarray(pt.probe_scores(w1, s.emb)[0], np.float64)
    np.testing.assert_allclose(S[n_pool:], S_probe, atol=2e-4)
    # The token memory problem: its scores at any W are the W_O^2 probe.
    mem = pt.memory_problem(s)
    S_mem = np.asarray(particles.weight_scores(mem, jnp.asarray(w1.WO2, jnp.float64)))
    np.testing.assert_allclose(S_mem, S_probe, atol=1e-4)


def test_predictions_and_agreement(wo2_run):
    c, s, out = wo2_run
    for kind in ("pool", "memory"):
        pred = pt.predict(s, c.lrs, c.steps, kind=kind, n_sequences=16)
        assert pred["margins"].shape == (2, 11, 12)
        np.testing.assert_allclose(pred["eta_eff"], np.array(c.lrs), rtol=1e-12)
        rows = pt.agreement(out, pred, c.lrs)
        assert len(rows) == 2 and all(np.isfinite(r["margin_mae"]) for r in rows)
    pred = pt.predict(s, c.lrs, 1, kind="memory", objective="all")
    np.testing.assert_allclose(pred["eta_eff"], np.array(c.lrs) * s.frac, rtol=1e-12)
    with pytest.raises(ValueError, match="kind"):
        pt.predict(s, c.lrs, 1, kind="nope")


def test_refined_memories_attend_better():
    """Refining the key memories raises the fraction of positions whose attention argmax is right."""
    data = pt.synthetic(0, N=12, seq_len=48, n_triggers=2, pool=4)
    emb = pt.embeddings(jax.random.key(1), 12, 48, 16)
    w = pt.ideal_weights(emb, jax.random.key(2))
    b = data.sample(jax.random.key(5), 32)

    def prev_acc(w):
        X = np.asarray(emb.E[b.tokens] + emb.P[None], np.float64)
        lg = np.einsum("btd,de,bse->bts", X, np.asarray(w.WK1, np.float64), X)
        lg = np.where(np.tril(np.ones((48, 48), bool))[None], lg, -np.inf)
        return (lg.argmax(-1)[:, 1:] == np.arange(47)[None]).mean()

    w1 = eqx.filter_jit(pt.refine_previous_token)(w, emb, data, jax.random.key(3), 200, 8, 0.2)
    assert prev_acc(w1) > prev_acc(w) + 0.05
    w2 = eqx.filter_jit(pt.refine_induction_head)(w1, emb, data, jax.random.key(4), 5, 8, 0.1)
    assert np.array_equal(np.asarray(w2.WK1), np.asarray(w1.WK1)) and not np.allclose(np.asarray(w2.WK2), np.asarray(w1.WK2))


@pytest.mark.parametrize("mode", ["all", "all6"])
def test_all_modes_update_their_matrices(mode):
    c = _tiny(mode, lrs=(0.5,), steps=2)
    s = pt.setup(c, n_stat_sequences=256)
    out = pt.train(c, s, progress=False)
    moved = {n: not np.allclose(np.asarray(getattr(out["weights"], n))[0], np.asarray(getattr(s.w0, n)))
             for n in ("WK1", "WV1", "WO1", "WK2", "WV2", "WO2")}
    expect = {"all": {"WK1", "WK2", "WO2"}, "all6": set(moved)}[mode]
    assert {n for n, m in moved.items() if m} == expect


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="train"):
        _tiny("both")
    with pytest.raises(ValueError, match="lr"):
        _tiny(lrs=(1.0, -2.0))
    with pytest.raises(ValueError, match="pool"):
        _tiny(pool=40)
    with pytest.raises(ValueError, match="objective"):
        _tiny(objective="some")


def test_spike_steps():
    assert pt.spike_steps(np.array([1.0, 0.5, 0.9, 0.8, 0.81, 2.0])).tolist() == [2, 5]


def test_large_spikes_ignore_noise_and_merge_runs():
    rng = np.random.default_rng(0)
    loss = 1.0 + 0.5 * rng.random(60)  # noise: at most 1.5x the median, never 3x
    assert pt.large_spikes(loss).size == 0
    loss[30:33] = 10.0  # one spike lasting three steps
    loss[50] = 10.0
    loss[5] = 100.0  # inside the first window: no history, not a spike
    assert pt.large_spikes(loss).tolist() == [30, 50]


def test_margin_jumps():
    m = np.ones((12, 3)) * np.array([1.0, 2.0, 4.0])
    m[:3] = 0.0  # the fast initial phase (skipped)
    m[8:, 0] = 2.5  # token 0 moves by 1.5 > 0.25 * max |m| = 1 between steps 7 and 8
    m[10:, 1] = 2.5  # a move of 0.5 < 1: not a jump
    assert pt.margin_jumps(m).tolist() == [7]
    assert pt.margin_jumps(m, skip=0).tolist() == [2, 7]


def test_script_end_to_end(tmp_path):
    mod = _script()
    out = tmp_path / "run"
    rc = mod.main(["--train", "wo2", "--d", "8", "--lr", "1,2", "--steps", "3", "--batch", "2", "--seq-len", "16",
                   "--refine-steps", "5", "--out", str(out), "--quiet"])
    assert rc == 0
    summ = json.loads((out / "summary.json").read_text())
    assert summ["config"]["lrs"] == [1.0, 2.0] and len(summ["agreement"]) == 2
    logs = np.load(out / "logs.npz")
    assert logs["loss"].shape == (2, 3) and logs["pred_margins"].shape[:2] == (2, 4)
    assert (out / "transformer_wo2_d8.png").exists() and (out / "transformer_wo2_d8.pdf").exists()


@pytest.mark.parametrize("argv", [["--train", "both"], ["--objective", "x"], ["--lr", "1,x"], ["--lr", "-1"], ["--d", "0"],
                                  ["--text", "/nonexistent/file.txt"], ["--nope"]])
def test_script_bad_flags_exit_2(argv, capsys):
    mod = _script()
    with pytest.raises(SystemExit) as e:
        mod.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
