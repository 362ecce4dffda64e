"""The Transformer validation (§7): data, model, SGD, particle problem, results, script.

Small shapes throughout (T = 16, d = 8); the configurations share one compiled training
loop where they can, so that the whole file stays well under a minute.
"""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import particles
from particles import _results
from particles import transformer as pt
from particles.transformer import _reproduce as R

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T_SMALL = 16
T_STATS, N_STATS = 48, 2048  # one sampler shape for every statistics test: compiled once
_sample = pt._data._sample_jit  # the jitted sampler `statistics` uses: one cache
_forward = jax.jit(pt.forward)


def _script():
    spec = importlib.util.spec_from_file_location("transformer_script", os.path.join(ROOT, "scripts", "transformer.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ----------------------------------------------------------------- data
def _numpy_sampler(marginal, cond, k, fixed, n, T, rng, outputs="uniform"):
    """The rules of the authors' generator, written independently in numpy."""
    N = len(marginal)
    cum_m, cum_c = np.cumsum(marginal), np.cumsum(cond, axis=1)
    draw = lambda cum: min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), N - 1)  # noqa: E731
    toks, cnts, trigs = [], [], []
    for _ in range(n):
        trig = list(np.argsort(-marginal, kind="stable")[:k]) if fixed else \
            list(rng.choice(N, size=k, replace=False, p=marginal))
        outs = [int(rng.integers(N)) if outputs == "uniform" else draw(cum_c[t]) for t in trig]
        seq, cnt, seen = [draw(cum_m)], [0], {}
        while len(seq) < T + 1:
            last = seq[-1]
            if last in trig:
                seen[last] = seen.get(last, 0) + 1
                seq.append(outs[trig.index(last)])
                cnt.append(seen[last])
            else:
                seq.append(draw(cum_c[last]))
                cnt.append(0)
        toks.append(seq)
        cnts.append(cnt)
        trigs.append(set(int(t) for t in trig))
    return np.array(toks), np.array(cnts), trigs


def _stats(tokens, counts, N):
    on = counts >= 2
    per_seq = on.sum(1)
    q = np.bincount(tokens[on], minlength=N).astype(float)
    q /= q.sum()
    nz = q[q > 0]
    return per_seq, -(nz * np.log(nz)).sum()


def _observed_triggers(tokens, counts):
    """Per sequence: the tokens seen followed by a counted output (its triggers that occur)."""
    return [set(tokens[b, np.nonzero(counts[b, 1:] > 0)[0]].tolist()) for b in range(len(tokens))]


@pytest.mark.parametrize("fixed", [True, False])
def test_sampler_statistics_match_an_independent_numpy_sampler(fixed):
    T, n_jax, n_np = T_STATS, N_STATS, 600
    cfg = pt.DataConfig.paper(k=5, fixed_triggers=fixed, seq_len=T)
    tokens, counts = (np.asarray(a) for a in _sample(cfg, jax.random.key(3), n_jax))
    assert tokens.shape == counts.shape == (n_jax, T + 1) and tokens.dtype == counts.dtype == np.int32
    s = pt.char_stats()
    marginal = s["unigram"] / s["unigram"].sum()
    cond = s["bigram"] / s["bigram"].sum(1, keepdims=True)
    nt, nc, trig_np = _numpy_sampler(marginal, cond, 5, fixed, n_np, T, np.random.default_rng(0))
    (pj, hj), (pn, hn) = _stats(tokens, counts, 65), _stats(nt, nc, 65)
    se = np.sqrt(pj.var() / n_jax + pn.var() / n_np)
    assert abs(pj.mean() - pn.mean()) < 5 * se  # counted positions per sequence (and their share, ÷ T)
    assert abs(pj.mean() / T - pn.mean() / T) < 5 * se / T
    assert abs(hj - hn) < 0.1  # entropy of the copied token (nats; ≈ 3.9 here, log 65 = 4.17)
    obs_j, obs_n = _observed_triggers(tokens, counts), _observed_triggers(nt, nc)
    if fixed:
        top5 = set(np.argsort(-marginal, kind="stable")[:5].tolist())
        assert set().union(*obs_j) == top5 == {1, 43, 58, 53, 39}  # ' ', e, t, o, a
    else:
        for x in (1, 43, 0, 13):  # inclusion frequency of a few tokens among observed triggers
            fj = np.mean([x in o for o in obs_j])
            fn = np.mean([x in o for o in obs_n])
            assert abs(fj - fn) < 5 * np.sqrt(fj * (1 - fj) / n_jax + fn * (1 - fn) / n_np) + 0.01
        assert all(o <= t for o, t in zip(obs_n, trig_np))  # the numpy helper sees only real triggers


def test_counts_follow_the_output_counter_rule():
    cfg = pt.DataConfig.paper(k=5, seq_len=T_STATS)
    tokens, counts = (np.asarray(a) for a in _sample(cfg, jax.random.key(0), N_STATS))
    trig = set(np.asarray(cfg.triggers).tolist())
    assert (counts[:, 0] == 0).all()
    for b in range(100):
        outs = {}
        for j in range(1, tokens.shape[1]):
            prev = int(tokens[b, j - 1])
            if prev in trig:
                assert counts[b, j] == np.sum(tokens[b, :j] == prev)  # c at its c-th occurrence
                assert outs.setdefault(prev, int(tokens[b, j])) == tokens[b, j]  # one output per trigger
            else:
                assert counts[b, j] == 0


def test_bigram_outputs_follow_the_conditional():
    cfg = pt.DataConfig.paper(k=1, seq_len=8, bigram_outputs=True)
    tokens, counts = (np.asarray(a) for a in _sample(cfg, jax.random.key(1), 4000))
    j = np.argmax(counts > 0, axis=1)
    has = counts.max(1) > 0
    out = tokens[np.arange(len(tokens)), j][has]
    s = pt.char_stats()
    want = s["bigram"][1] / s["bigram"][1].sum()  # the output of ' ' ~ its bigram row
    got = np.bincount(out, minlength=65) / len(out)
    assert np.all(np.abs(got - want) < 5 * np.sqrt(want * (1 - want) / len(out)) + 2e-3)


def test_paper_statistics_and_shipped_counts():
    s = pt.char_stats()
    assert s["unigram"].sum() == 1115394 and s["bigram"].shape == (65, 65)
    assert "public domain" in s["provenance"]["text"]
    st = pt.statistics(pt.DataConfig.paper(seq_len=T_STATS), jax.random.key(0), N_STATS, N_STATS)
    assert 3.8 < st["entropy"] < 4.1 and 0.15 < st["share"] < 0.35 and st["n_sequences"] == N_STATS


@pytest.mark.parametrize("call, name", [
    (lambda: pt.DataConfig.paper(k=66), "k"),
    (lambda: pt.DataConfig.paper(k=0), "k"),
    (lambda: pt.DataConfig.paper(seq_len=1), "seq_len"),
    (lambda: pt.sample(pt.DataConfig.paper(seq_len=4), jax.random.key(0), 0), "batch_size"),
    (lambda: pt.Config(mode="both"), "mode"),
    (lambda: pt.Config(batch=0), "batch"),
    (lambda: pt.Config(lrs=(1.0, -2.0)), "lrs"),
    (lambda: pt.Config(mode="all", start="ideal"), "start"),
    (lambda: pt.Config(start="best"), "start"),
    (lambda: pt.Config(momentum=1.5), "momentum"),
    (lambda: pt.Config(trainable=("WQ1",)), "trainable"),
    (lambda: pt.ModelConfig(output_init="xavier"), "output_init"),
])
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


# ----------------------------------------------------------------- model
def _reference_logits(p, tokens):
    """Loops over positions in float64 numpy, straight from the model's equations."""
    A = {k: np.asarray(getattr(p, k), np.float64) for k in ("E", "P", "U") + pt.MODES["all6"].trainable}
    T, d = len(tokens), A["E"].shape[1]
    x = np.stack([A["E"][tokens[t]] + A["P"][t] for t in range(T)])

    def layer(h, WK, WV, WO):
        out = np.zeros_like(h)
        for t in range(T):
            s = np.array([h[t] @ WK @ h[j] for j in range(t + 1)]) / np.sqrt(d)
            a = np.exp(s - s.max())
            a /= a.sum()
            out[t] = h[t] + WO @ WV @ sum(a[j] * h[j] for j in range(t + 1))
        return out

    h1 = layer(x, A["WK1"], A["WV1"], A["WO1"])
    h2 = layer(h1, A["WK2"], A["WV2"], A["WO2"])
    return np.stack([A["U"] @ h2[t] for t in range(T)])


def test_forward_matches_a_loop_reference_and_the_init_scales():
    d, T = 8, 6
    p = pt.init_params(pt.ModelConfig(d=d), jax.random.key(0), 65, T)
    p = p.replace(WK1=3 * p.WK1, WK2=3 * p.WK2)  # sharper attention than at init
    tokens = np.array([[0, 3, 1, 3, 64, 2], [4, 4, 0, 1, 2, 0]])
    got = np.asarray(_forward(p, jnp.asarray(tokens)))
    for b in range(2):
        np.testing.assert_allclose(got[b], _reference_logits(p, tokens[b]), rtol=0, atol=5e-4)  # float32
    big = pt.init_params(pt.ModelConfig(d=64), jax.random.key(1), 65, 256)
    assert abs(np.var(np.asarray(big.E)) - 1) < 0.05 and abs(np.var(np.asarray(big.P)) - 1) < 0.05
    for name in ("U", "WK1", "WV2", "WO2"):  # nn.Linear: uniform on ±1/√d, variance 1/(3d)
        a = np.asarray(getattr(big, name))
        assert np.abs(a).max() <= 1 / 8 and abs(a.var() * 3 * 64 - 1) < 0.1
    legacy = pt.init_params(pt.ModelConfig(d=64, sqrtd_embeddings=True, output_init="normal", values="identity"),
                            jax.random.key(1), 65, 256)
    assert abs(np.var(np.asarray(legacy.E)) * 64 - 1) < 0.05 and abs(np.var(np.asarray(legacy.U)) * 64 - 1) < 0.1
    np.testing.assert_array_equal(np.asarray(legacy.WV1), np.eye(64))
    np.testing.assert_allclose(np.asarray(legacy.WO1) @ np.asarray(legacy.WO1).T, np.eye(64), atol=1e-5)


def test_probes_match_their_definitions():
    p = pt.init_params(pt.ModelConfig(d=6), jax.random.key(0), 65, 4)
    trig = jnp.array([1, 43, 58])
    S_O, S_K = (np.asarray(a, np.float64) for a in pt.probe_scores(p, trig))
    A = {k: np.asarray(getattr(p, k), np.float64) for k in ("E", "U", "WK2", "WV1", "WO1", "WV2", "WO2")}
    for k in (0, 5, 64):
        for y in (0, 7, 64):
            assert abs(S_O[k, y] - A["U"][y] @ A["WO2"] @ A["WV2"] @ A["E"][k]) < 1e-4
    for i, a in enumerate([1, 43, 58]):
        for j, b in enumerate([1, 43, 58]):
            assert abs(S_K[i, j] - A["E"][a] @ A["WK2"] @ A["WO1"] @ A["WV1"] @ A["E"][b]) < 1e-4
    m = np.asarray(pt.probe_margins(jnp.asarray(S_K)))
    assert abs(m[1] - (S_K[1, 1] - max(S_K[1, 0], S_K[1, 2]))) < 1e-6


# ----------------------------------------------------------------- training and particles
def _tiny(**kw):
    base = dict(mode="wo2", data=pt.DataConfig.paper(k=5, seq_len=T_SMALL), d=8, lrs=(1.0, 2.0), steps=4, batch=4,
                weight_decay=0.0)
    base.update(kw)
    return pt.Config(**base)


def _first_batch(c):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(c.seed), 2), 0)  # train()'s batch of step 0
    return pt.sample(c.data, key, c.batch)


def _head_loss(p, tokens, counts):
    T = tokens.shape[1] - 1
    logp = jax.nn.log_softmax(pt.forward(p, tokens[:, :T]), -1)
    ce = -jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
    on = counts[:, 1:] >= 2
    return jnp.sum(jnp.where(on, ce, 0.0)) / jnp.sum(on)


@pytest.fixture(scope="module")
def wo2_run():
    c = _tiny()
    # The script test below runs the same shapes: both share one compiled loop.
    return c, R.run(c, pool=dict(n_sequences=128, n_particles=500))


def test_sgd_with_momentum_and_weight_decay_is_torchs(wo2_run):
    """Two steps of train() equal torch's SGD written out, on autodiff of the full forward pass."""
    c = _tiny(lrs=(0.5, 1.0), steps=2, momentum=0.9, weight_decay=0.1)
    p0 = pt.initial_params(c)
    out = pt.train(c, p0, progress=False)
    key = jax.random.fold_in(jax.random.key(c.seed), 2)
    W, buf = p0.WO2, jnp.zeros_like(p0.WO2)
    grad = jax.jit(jax.grad(lambda w, tokens, counts: _head_loss(p0.replace(WO2=w), tokens, counts)))
    for k in range(2):
        tokens, counts = pt.sample(c.data, jax.random.fold_in(key, k), c.batch)
        g = grad(W, tokens, counts) + 0.1 * W
        buf = 0.9 * buf + g
        W = W - 0.5 * buf
    np.testing.assert_allclose(np.asarray(out["params"].WO2[0]), np.asarray(W), atol=2e-6)
    assert np.asarray(out["params"].WK1[0]).tobytes() == np.asarray(p0.WK1).tobytes()  # frozen


def test_particle_gd_step_equals_a_transformer_step_on_wo2(wo2_run):
    """The W_O^2 problem built on a batch: one particles.gd step = one Transformer GD step
    on that batch (scores at the counted positions and the probe margins)."""
    c, _ = wo2_run
    p0 = pt.initial_params(c)
    tokens, counts = _first_batch(c)
    V, B, Y = pt.pool_arrays(p0, tokens, counts)
    prob = pt.problem_from_arrays(p0, V, B, Y)
    assert isinstance(prob, particles.Problem) and prob.N == len(Y) + 65
    lr = 2.0
    traj = particles.gd(prob, lr, 1, save_scores=True)
    g = jax.jit(jax.grad(lambda w: _head_loss(p0.replace(WO2=w), tokens, counts)))(p0.WO2)
    p1 = p0.replace(WO2=p0.WO2 - lr * g)
    on = np.asarray(counts)[:, 1:] >= 2
    logits = np.asarray(_forward(p1, tokens[:, :T_SMALL]), np.float64)[on]
    S1 = np.asarray(traj.scores[1])
    np.testing.assert_allclose(S1[: len(Y)], logits, atol=2e-4)  # float32 Transformer vs float64 particles
    np.testing.assert_allclose(S1[len(Y):], np.asarray(pt.probe_scores(p1)[0], np.float64), atol=2e-4)
    np.testing.assert_allclose(float(traj.loss[0]), float(_head_loss(p0, tokens, counts)), rtol=1e-5)
    # ... and train()'s fast path takes the same step (weight decay off).
    out = pt.train(_tiny(lrs=(lr, 1.0), steps=1), p0, progress=False)
    np.testing.assert_allclose(np.asarray(out["params"].WO2[0]), np.asarray(p1.WO2), atol=2e-6)


def test_run_prediction_and_agreement(wo2_run):
    c, run = wo2_run
    assert run.loss.shape == (2, 4) and run.margins_O.shape == (2, 5, 65) and run.margins_K.shape == (2, 5, 5)
    assert run.pred_margins.shape == (2, 5, 65) and run.sgd_loss.shape == (2, 5)
    np.testing.assert_allclose(run.pred_margins[:, 0], run.margins_O[:, 0], atol=2e-4)  # same start
    assert run.info["sharpness"] > 0 and len(run.info["agreement"]) == 2
    res = run.results()
    assert len(res) == 2 and {"spikes", "margin_jumps", "window", "steps_to"} <= set(res[0])
    # The smaller pool particles.sgd runs on: a subset of the positions, the probes kept.
    prob, info = pt.memory_problem(c.data, pt.initial_params(c), n_sequences=128, n_particles=500)
    small = pt._predict.subsample(prob, 50)
    n = info["n_pool"]
    assert small.N == 50 + 65 and np.isclose(float(np.asarray(small.p).sum()), 1.0)
    S0, S0s = np.asarray(prob.S0), np.asarray(small.S0)
    assert all(np.any(np.all(np.isclose(S0[:n], row), axis=1)) for row in S0s[:50])
    np.testing.assert_array_equal(S0s[50:], S0[n:])


def test_run_save_load_round_trip(wo2_run, tmp_path):
    _, run = wo2_run
    path = tmp_path / "run.npz"
    _results.save(path, run, extra=dict(note="test"))
    back = _results.load(path)
    assert isinstance(back, R.Run) and back.label == run.label and back.config == json.loads(json.dumps(run.config))
    for k in R.Run._FIELDS:
        a, b = getattr(run, k), getattr(back, k)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), b)
    np.testing.assert_array_equal(back.final["WO2"], run.final["WO2"])
    rep = R.Reproduction(runs=dict(wo2_random=run), quick=True, info=dict(seconds=dict(total=1.0)))
    _results.save(tmp_path / "rep.npz", rep)
    back = _results.load(tmp_path / "rep.npz")
    np.testing.assert_array_equal(back.runs["wo2_random"].loss, run.loss)


def test_modes_train_their_matrices():
    c = _tiny(mode="all", lrs=(0.5, 1.0), steps=2, snapshot_steps=(1,))
    out = pt.train(c, progress=False)
    p0 = out["p0"]
    moved = {n for n in pt.MODES["all6"].trainable
             if not np.array_equal(np.asarray(getattr(out["params"], n))[0], np.asarray(getattr(p0, n)))}
    assert moved == {"WK1", "WK2", "WO2"} and set(out["snapshots"]) == {1}
    # start="all": the keys of that run at step 1, W_O^2 back at its random init.
    snap = out["snapshots"][1]
    w = pt.initial_params(_tiny(start="all", start_step=1, start_lr=0.5), start_params=jax.tree_util.tree_map(
        lambda a: a[0], snap))
    np.testing.assert_allclose(np.asarray(w.WK1), np.asarray(snap.WK1[0]), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(w.WO2), np.asarray(p0.WO2))


def test_script_end_to_end_and_bad_flags(tmp_path, capsys):
    mod = _script()
    out = tmp_path / "run"
    rc = mod.main(["--mode", "wo2", "--d", "8", "--lr", "1,2", "--steps", "4", "--batch", "4", "--seq-len",
                   str(T_SMALL), "--weight-decay", "0", "--pool", "500", "--out", str(out), "--quiet"])
    assert rc == 0
    summ = json.loads((out / "summary.json").read_text())
    assert summ["config"]["wo2"]["lrs"] == [1.0, 2.0] and len(summ["agreement"]["wo2"]) == 2
    assert isinstance(_results.load(out / "run.npz"), R.Run)
    assert (out / "transformer_wo2.png").exists() and (out / "report.md").exists()
    for argv in (["--mode", "both"], ["--k", "70"], ["--seq-len", "1"], ["--batch", "0"], ["--lr", "1,x"],
                 ["--start", "ideal", "--mode", "all"], ["--nope"]):
        with pytest.raises(SystemExit) as e:
            _exit(mod, argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error" in err[0], err


def _exit(mod, argv):
    from particles.cli import _common as c

    raise SystemExit(c.run_main(mod.main, argv, prog="transformer.py"))
