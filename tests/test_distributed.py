"""Sweeps across processes with jax.distributed (two local CPU processes, gloo): the same
arrays as one process, bit for bit; bad launches fail fast with one line."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import particles as pt

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    # One CPU device per process: the global mesh has one device per process.
    return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")


def test_two_processes_give_the_one_process_sweep(tmp_path):
    port, out = _free_port(), str(tmp_path / "sweep.npz")
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "_sweep_worker.py"), str(port), "2", str(i), out],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (0, 1)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    partial = pt.load(out + ".partial.npz")  # the checkpoint, written by process 0 alone
    assert partial.chunks_computed == partial.chunks_total
    two = pt.load(out)
    axes = {"lr": [0.5, 2.0, 8.0], "corr": [0.1, 0.6, 0.9], "n": [3], "seed": [0, 1]}
    one = pt.sweep("equicorrelated", axes, 40, chunk_size=4, batch_size=2)
    assert two.config == one.config
    for k in one.outputs:
        np.testing.assert_array_equal(two.outputs[k], one.outputs[k])


def _one_line(proc):
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return len(lines) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("flags,words", [
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "process_id=2"),
    (["--coordinator", "nowhere:x", "--num-processes", "2", "--process-id", "1"], "host:port"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2"], "all three"),
])
def test_bad_launches_are_one_line(tmp_path, flags, words):
    proc = subprocess.run([sys.executable, os.path.join(HERE, "..", "scripts", "sweep.py"), "--steps", "5",
                           "--out", str(tmp_path / "o"), *flags], capture_output=True, text=True, env=_env(),
                          timeout=120)
    assert proc.returncode == 2 and _one_line(proc) and words in proc.stderr, proc.stderr


def test_an_unreachable_coordinator_fails_within_its_timeout():
    code = "from particles import distributed; distributed.initialize('127.0.0.1:%d', 2, 1, timeout=3)" % _free_port()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 1 and "not reachable after 3 s" in proc.stderr
    code = "from particles import distributed; distributed.initialize('127.0.0.1:%d', 2, 0, timeout=3)" % _free_port()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert proc.returncode == 2 and _one_line(proc) and "not every process joined within 3 s" in proc.stderr
