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
            s = np.array([h[t] @ WK @ h[j] for j in range(t + 1)])
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
    base = dict(train=train, d=16, lrs=(1.0, 2.0), steps=6, batch=4, seq_len=32, N=12, pool=4, n_triggers=2)
    base.update(kw)
    return pt.Config(**base)


def test_training_lowers_loss_and_prediction_builds_problem():
    c = _tiny("wo2", steps=10)
    s = pt.setup(c, n_stat_sequences=256)
    out = pt.train(c, s, progress=False)
    assert out["loss"].shape == (2, 10) and out["margins_O"].shape == (2, 11, 12)
    held = s.data.sample(jax.random.key(123), 64).tokens
    before = float(jnp.mean(pt.token_losses(s.w0, s.emb, held)))
    for i in range(2):
        w = jax.tree_util.tree_map(lambda a: a[i], out["weights"])
        assert float(jnp.mean(pt.token_losses(w, s.emb, held))) < before
    # The memory problem: its scores at any W are the W_O^2 probe of the Transformer.
    prob = pt.memory_problem(s)
    assert isinstance(prob, particles.Problem) and prob.N == prob.M == 12
    np.testing.assert_allclose(np.asarray(prob.p).sum(), 1.0, atol=1e-12)
    w1 = jax.tree_util.tree_map(lambda a: a[1], out["weights"])
    S_probe = np.asarray(pt.probe_scores(w1, s.emb)[0], np.float64)
    S_part = np.asarray(particles.weight_scores(prob, jnp.asarray(w1.WO2, jnp.float64)))
    np.testing.assert_allclose(S_part, S_probe, atol=1e-4)
    pred = pt.predict(s, c.lrs, c.steps)
    np.testing.assert_allclose(pred["eta_eff"], np.array(c.lrs) * s.frac, rtol=1e-12)
    rows = pt.agreement(out, pred, c.lrs)
    assert len(rows) == 2 and all(np.isfinite(r["margin_mae"]) for r in rows)


def test_all_mode_updates_every_matrix():
    c = _tiny("all", lrs=(0.5,), steps=2)
    s = pt.setup(c, n_stat_sequences=256)
    out = pt.train(c, s, progress=False)
    for name in ("WK1", "WV1", "WO1", "WK2", "WV2", "WO2"):
        assert not np.allclose(np.asarray(getattr(out["weights"], name))[0], np.asarray(getattr(s.w0, name)))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="train"):
        _tiny("both")
    with pytest.raises(ValueError, match="lr"):
        _tiny(lrs=(1.0, -2.0))
    with pytest.raises(ValueError, match="pool"):
        _tiny(pool=40)


def test_spike_steps():
    assert pt.spike_steps(np.array([1.0, 0.5, 0.9, 0.8, 0.81, 2.0])).tolist() == [2, 5]


def test_script_end_to_end(tmp_path):
    mod = _script()
    out = tmp_path / "run"
    rc = mod.main(["--train", "wo2", "--d", "8", "--lr", "1,2", "--steps", "3", "--batch", "2", "--seq-len", "16",
                   "--out", str(out), "--quiet"])
    assert rc == 0
    summ = json.loads((out / "summary.json").read_text())
    assert summ["config"]["lrs"] == [1.0, 2.0] and len(summ["agreement"]) == 2
    logs = np.load(out / "logs.npz")
    assert logs["loss"].shape == (2, 3) and logs["pred_margins"].shape[:2] == (2, 4)
    assert (out / "transformer_wo2_d8.png").exists() and (out / "transformer_wo2_d8.pdf").exists()


@pytest.mark.parametrize("argv", [["--train", "both"], ["--lr", "1,x"], ["--lr", "-1"], ["--d", "0"],
                                  ["--text", "/nonexistent/file.txt"], ["--nope"]])
def test_script_bad_flags_exit_2(argv, capsys):
    mod = _script()
    with pytest.raises(SystemExit) as e:
        mod.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
