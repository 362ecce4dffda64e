"""Start one benchmark configuration as several local processes joined by `jax.distributed`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile


def run_processes(argv: list, processes: int, *, cwd: str, timeout: float, env: dict | None = None) -> list:
    """Run `argv + [--processes P --process-id i --port PORT]` for i < P, one CPU device each,
    and return each process's last stdout line parsed as JSON (process 0 first). Raises
    `RuntimeError` with the failing process's stderr."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", **(env or {}))
    # Files, not pipes: a process blocked on a full pipe never reaches the others' barrier.
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(2 * processes)]
    procs = [subprocess.Popen(argv + ["--processes", str(processes), "--process-id", str(i), "--port", str(port)],
                              env=env, cwd=cwd, stdout=logs[2 * i], stderr=logs[2 * i + 1], text=True)
             for i in range(processes)]
    for pr in procs:
        pr.wait(timeout=timeout)
    outs = []
    for f in logs:
        f.seek(0)
        outs.append(f.read())
        f.close()
    for i, pr in enumerate(procs):
        if pr.returncode:
            raise RuntimeError(f"{processes} processes failed (process {i}):\n{outs[2 * i + 1][-3000:]}")
    return [json.loads(outs[2 * i].strip().splitlines()[-1]) for i in range(processes)]
