"""The Trajectory (its message, members of a batch, its one-screen repr) and the one result
format: what a file holds, what is refused and why. Expected values are the arrays written
(exact round trips) and the texts the documentation states."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import particles as pt
from particles import _results
from particles._trajectory import meta_json


def _traj(status=0, bad=-1, steps=True, N=2, M=2, T=3, **meta):
    m = np.arange(T * N, dtype=np.float64).reshape(T, N) / 10
    return pt.Trajectory(t=jnp.arange(T, dtype=jnp.float64), steps=jnp.arange(T) if steps else None,
                         loss=jnp.linspace(1.0, 0.5, T), zero_one=jnp.zeros(T), accuracy=jnp.ones(T),
                         margins=jnp.asarray(m), final_scores=jnp.zeros((N, M)), status=jnp.asarray(status),
                         first_bad_step=jnp.asarray(bad), info=meta_json(dict(integrator="gd", **meta)))


def test_message_ok_and_integrator():
    t = _traj()
    assert t.ok and t.message == "ok" and t.integrator == "gd" and t.batch_shape == ()
    assert pt.Trajectory(**{k: getattr(t, k) for k in ("t", "loss", "zero_one", "accuracy", "margins", "final_scores",
                                                       "status", "first_bad_step")}).integrator == "?"
    bad = _traj(status=1, bad=2)
    assert not bad.ok and bad.message == "non-finite values from step 2"
    assert _traj(status=1, bad=-1).message == "non-finite values"  # the step is not known
    assert _traj(status=1, bad=2, steps=False).message == "non-finite values"  # a flow has times, not steps
    hinted = _traj(status=2, hints={"MAX_STEPS": "raise max_steps"}, steps=False)
    assert hinted.message == "max_steps reached: raise max_steps"
    assert _traj(status=3).message == "solver failure"


def test_a_batch_its_message_and_its_members():
    P = pt.two_particles(0.5, 0.75)
    bad = pt.Problem.from_grams(1e300 * np.eye(2), np.eye(2), [0.5, 0.5], [0, 1])
    batch = pt.gd(bad, [1e10, 1e-300, 1e12], 4)
    assert batch.batch_shape == (3,) and not batch.ok
    # runs 0 and 2 overflow on step 1; the tiny rate does not move the scores
    assert batch.message == "non-finite values (first bad steps [1]) in 2 of 3 runs"
    rates = pt.gd(P, [1.0, 2.0], 5)
    member = rates[1]
    assert member.metadata["lr"] == 2.0 and member.metadata["settings"]["lr"] == 2.0
    assert np.array_equal(np.asarray(member.margins), np.asarray(pt.gd(P, 2.0, 5).margins))
    assert rates[np.int64(0)].metadata["lr"] == 1.0
    assert rates[:1].metadata["lr"] == [1.0, 2.0]  # a slice is not one member: the rates stay
    with pytest.raises(IndexError, match="not batched"):
        member[0]


def test_repr_of_runs_batches_and_flows():
    P = pt.two_particles(0.5, 0.75)
    text = repr(pt.gd(P, 1.0, 4, save_scores=True)).splitlines()
    assert text[0] == "Trajectory(gd" and text[-1] == ")"
    assert text[1].split() == ["rows", "5", "(steps", "0", "..", "4);", "N=2,", "M=2"]
    assert text[-2].split() == ["status", "ok"]
    assert any(ln.split()[:2] == ["saved", "scores"] and "(5, 2, 2)" in ln for ln in text)
    assert any(ln.strip().startswith("settings") and "lr=1.0" in ln for ln in text)
    margins = [ln for ln in text if ln.strip().startswith("margins")][0]
    assert margins.split()[1:] == ["(0,", "0)", "->", f"({float(pt.gd(P, 1.0, 4).margins[-1, 0]):.4g},",
                                   f"{float(pt.gd(P, 1.0, 4).margins[-1, 1]):.4g})"]
    loss = [ln for ln in text if ln.strip().startswith("loss")][0]
    assert loss.split()[1:] == [f"{np.log(2):.6g}", "->", f"{float(pt.gd(P, 1.0, 4).loss[-1]):.6g}"]
    batch = repr(pt.gd(P, [1.0, 2.0], 4)).splitlines()
    assert batch[1].split()[:2] == ["batch", "(2,):"] and "over the 2 members" in batch[1]
    assert "(over tokens and members)" in [ln for ln in batch if "margins" in ln][0]
    many = repr(pt.gd(pt.orthogonal(pt.zipf(8)), 1.0, 3)).splitlines()
    line = [ln for ln in many if ln.strip().startswith("margins")][0]
    assert line.split()[1] == "min" and line.endswith("(over tokens)")
    flow = repr(pt.flow(P, 10.0, ts=np.array([0.0, 1.0, 10.0]))).splitlines()
    assert flow[1].split()[:5] == ["rows", "3", "(t", "0", ".."] and "solver steps=" in flow[-3] + flow[-2]


def test_runs_and_file_round_trips(tmp_path):
    P = pt.two_particles(0.5, 0.75)
    traj = pt.gd(P, 1.0, 4)
    with pytest.raises(ValueError, match="no '/'"):
        pt.save(tmp_path / "r.npz", pt.Runs({"a/b": traj}))
    with pytest.raises(ValueError, match="not allowed: save a particles result"):
        pt.save(tmp_path / "x.npz", {"gd": traj})
    pt.save(tmp_path / "t.npz", traj)
    assert pt.load_problem(tmp_path / "t.npz") is None  # no problem was saved
    saved = _results.load_saved(tmp_path / "t.npz")
    assert saved.extra == {} and "jax" in saved.versions and saved.problem is None
    assert saved.metadata["integrator"] == "gd" and saved.metadata["lr"] == 1.0
    pt.save(tmp_path / "p.npz", traj, problem=P, extra={"note": [1, 2]})
    back = _results.load_saved(tmp_path / "p.npz", "trajectory")
    assert back.extra == {"note": [1, 2]}
    for name in ("p", "Y", "G_E", "G_U", "S0", "E", "U"):
        assert np.array_equal(np.asarray(getattr(back.problem, name)), np.asarray(getattr(P, name))), name
    assert (back.problem.structure_E, back.problem.structure_U) == (P.structure_E, P.structure_U)
    with pytest.raises(ValueError, match="holds a trajectory, not a sweep"):
        _results.load_saved(tmp_path / "p.npz", "sweep")
    with pytest.raises(FileNotFoundError):
        pt.load(tmp_path / "missing.npz")


def _rewrite(path, out, change=None, **extra_arrays):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["__meta__"].tobytes().decode())
    if change is not None:
        meta = change(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    arrays.update(extra_arrays)
    np.savez(out, **arrays)
    return out


def test_foreign_old_and_corrupt_files_are_refused(tmp_path):
    path = tmp_path / "t.npz"
    traj = pt.gd(pt.two_particles(0.5, 0.75), 1.0, 4)
    traj.save(path)
    cases = [
        (lambda m: dict(m, format="other"), "format 'other' is not 'particles'"),
        (lambda m: dict(m, format_version=3), "format version 3 cannot be read"),
        (lambda m: dict(m, kind="nonsense"), "result kind 'nonsense' is unknown"),
        (lambda m: dict(m, metadata=[1]), "no 'metadata' mapping"),
        (lambda m: [m], "not a mapping"),
    ]
    for i, (change, match) in enumerate(cases):
        with pytest.raises(ValueError, match=match):
            pt.load(_rewrite(path, tmp_path / f"c{i}.npz", change))
    arrays = {"__meta__": np.frombuffer(b"{not json", np.uint8)}
    np.savez(tmp_path / "j.npz", **arrays)
    with pytest.raises(ValueError, match="corrupt metadata"):
        pt.load(tmp_path / "j.npz")
    with pytest.raises(ValueError, match="missing arrays"):
        with np.load(path) as data:
            kept = {k: data[k] for k in data.files if k != "loss"}
        np.savez(tmp_path / "m.npz", **kept)
        pt.load(tmp_path / "m.npz")
    bad_problem = _rewrite(path, tmp_path / "bp.npz", lambda m: dict(m, problem={}), **{"problem.p": np.ones(3)})
    with pytest.raises(ValueError, match="corrupt problem arrays"):
        pt.load_problem(bad_problem)
    # a version-1 trajectory file (format "particles.trajectory", metadata under "info") still loads
    v1 = _rewrite(path, tmp_path / "v1.npz", lambda m: {"format": "particles.trajectory", "format_version": 1,
                                                         "info": m["metadata"]})
    old = pt.load(v1)
    assert isinstance(old, pt.Trajectory) and np.array_equal(np.asarray(old.margins), np.asarray(traj.margins))
    assert old.metadata["integrator"] == "gd"
    with pytest.raises(ValueError, match="format 'particles.trajectory' is not 'particles'"):  # only version 1 of it
        pt.load(_rewrite(path, tmp_path / "v1b.npz", lambda m: dict(m, format="particles.trajectory", format_version=2)))
