"""gd_vocab on 4 simulated CPU devices against the single-device run.

The suite's process already has 2 devices (conftest), and the device count is fixed when JAX
starts, so the 4-device checks run in one child process with XLA_FLAGS set before JAX is
imported; it prints one JSON object that the tests below read.
"""

import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from particles._vocab import gd_vocab, vocab_plan, place
from particles import _vocab_kernel as K

out = {"devices": len(jax.devices())}
rng = np.random.default_rng(0)
# N = 37 and M = 23 divide neither 4 devices nor 4 * chunk: rows are padded with p = 0 and
# classes with -inf scores.
N, M, d = 37, 23, 16
E = rng.normal(size=(N, d)) / 4
U = rng.normal(size=(M, d)) / 4
p = rng.random(N) + 0.1
p /= p.sum()
t = rng.integers(0, M, N)
W0 = rng.normal(size=(d, d)) * 0.3
names = ("loss", "accuracy", "zero_one", "min_margin", "margins", "W")
ref = gd_vocab(E, U, p, t, 2.0, 12, W0=W0, chunk=5, save_every=3, devices=1)
diffs = {}
for dev, u in [(4, 1), (4, 2), (4, 4)]:
    got = gd_vocab(E, U, p, t, 2.0, 12, W0=W0, chunk=5, save_every=3, devices=dev, u_shards=u)
    diffs[f"{dev}x{u}"] = {n: float(np.max(np.abs(np.asarray(getattr(got, n)) - np.asarray(getattr(ref, n)))))
                          for n in names}
    diffs[f"{dev}x{u}"]["layout"] = [got.metadata["devices"], got.metadata["u_shards"]]
out["diffs"] = diffs
mixed = gd_vocab(E, U, p, t, 2.0, 12, W0=W0, chunk=5, save_every=3, devices=4, u_shards=2,
                 compute_dtype=jnp.float32)
mixed1 = gd_vocab(E, U, p, t, 2.0, 12, W0=W0, chunk=5, save_every=3, devices=1, compute_dtype=jnp.float32)
out["mixed"] = float(np.max(np.abs(np.asarray(mixed.W) - np.asarray(mixed1.W))))

# One all-reduce of the d x d gradient per step (the others, U split, reduce (2, chunk) rows).
def reduces(u):
    plan = vocab_plan(N, M, d, devices=4, u_shards=u, chunk=5)
    Ep, Up, pp, tp = place(plan, E, U, p, t, np.float64, np.float64)
    f = jax.jit(lambda W, E, U, p, t: K.step(W, E, U, p, t, 2.0, mesh=plan.mesh, chunk=plan.chunk, M=M,
                                              split=plan.split))
    hlo = f.lower(jnp.asarray(W0), Ep, Up, pp, tp).compile().as_text()
    lines = [l for l in hlo.splitlines() if "all-reduce(" in l or "all-reduce-start(" in l]
    return [sum(f"f64[{d},{d}]" in l for l in lines), len(lines)]
out["reduces"] = {str(u): reduces(u) for u in (1, 2)}

errors = {}
for kw in (dict(devices=8), dict(devices=4, u_shards=3)):
    try:
        gd_vocab(E, U, p, t, 1.0, 1, **kw)
        errors[str(kw)] = None
    except ValueError as e:
        errors[str(kw)] = str(e)
out["errors"] = errors
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def four():
    # Four simulated CPU devices, on a GPU machine too.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_ENABLE_X64="1",
               JAX_PLATFORMS="cpu")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_child_has_four_devices(four):
    assert four["devices"] == 4


@pytest.mark.parametrize("layout", ["4x1", "4x2", "4x4"])
def test_sharded_runs_match_one_device(four, layout):
    # float64, magnitudes O(1): the only difference is the order of the gradient's sum (chunks,
    # then an all-reduce across devices) and of the observables' sums, a few ulp per step
    # (measured <= 1e-15); 1e-12 leaves room for 12 steps of amplification.
    diffs = four["diffs"][layout]
    devices, u = (int(x) for x in layout.split("x"))
    assert diffs.pop("layout") == [devices, u]
    for name, diff in diffs.items():
        assert diff <= 1e-12, (layout, name, diff)


def test_mixed_precision_sharded(four):
    # Same float32 products on 1 and 4 devices; float64 accumulation: float32 round-off only.
    assert four["mixed"] <= 1e-5


def test_one_gradient_allreduce_per_step(four):
    # u_shards = 1: exactly one all-reduce in the step, of the d x d gradient. u_shards = 2:
    # still one of the gradient, plus the softmax's row max and normaliser.
    grads, total = four["reduces"]["1"]
    assert (grads, total) == (1, 1)
    grads, total = four["reduces"]["2"]
    assert grads == 1 and total >= 2


def test_bad_device_counts(four):
    errors = four["errors"]
    assert "devices=8 is not allowed" in errors["{'devices': 8}"]
    assert "u_shards=3 is not allowed" in errors["{'devices': 4, 'u_shards': 3}"]
    assert "[1, 2, 4]" in errors["{'devices': 4, 'u_shards': 3}"]
