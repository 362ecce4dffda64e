"""Several processes (hosts, or GPUs) as one: JAX's multi-controller runtime for sweeps.

Every process runs the same program. `initialize` joins them into one global device mesh
(`jax.distributed`; collectives over gloo on CPU, NCCL on GPU); a sweep then shards each
chunk of cells over every device of every process, gathers the chunk's results on every
process (one all-gather of cells × metrics numbers per chunk), and only the main process
(process 0) writes files. Nothing here is a scheduler: launch one process per host or GPU
with your cluster's tools (SLURM: `srun`, where `jax.distributed.initialize()` finds the
coordinator itself).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import time
from typing import Optional

import jax
import numpy as np

TIMEOUT = 60
"""Seconds to wait for every process to join before giving up (one line, never a hang)."""


def initialize(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *, timeout: int = TIMEOUT) -> None:
    """Join this process to the others: `jax.distributed.initialize`, checked first.

    **Arguments:**

    - `coordinator`: "host:port" of process 0's coordinator service; None lets JAX detect
      it (SLURM and other clusters), with `num_processes` and `process_id` None too.
    - `num_processes`: how many processes take part (≥ 1).
    - `process_id`: this process's index, in [0, num_processes).
    - `timeout`: seconds to wait for the others. A process other than 0 that cannot reach
      the coordinator raises a `ValueError`; when the processes do not all join in time the
      process ends with one line on stderr and exit code 2 (JAX's runtime would abort it).

    Call it before anything else uses JAX. On CPU the collectives use gloo.
    """
    explicit = (coordinator, num_processes, process_id)
    if any(x is not None for x in explicit) and any(x is None for x in explicit):
        raise ValueError("coordinator, num_processes and process_id go together: give all three (or none, to "
                         "let JAX detect a cluster such as SLURM).")
    if coordinator is not None:
        _check_address(coordinator)
        if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
            raise ValueError(f"num_processes={num_processes!r} is not allowed: an int >= 1.")
        if isinstance(process_id, bool) or not isinstance(process_id, int) or not 0 <= process_id < num_processes:
            raise ValueError(f"process_id={process_id!r} is not allowed: an int in [0, {num_processes}) "
                             f"(num_processes={num_processes}).")
    # The CPU backend's collectives (GPUs use NCCL whatever this says). Asking for the
    # backend here would start it, which must wait until after initialize.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    advice = (f"check the address, the port, and that all {num_processes or 'the'} processes were started with "
              "the same settings")
    if coordinator is not None and process_id != 0:
        _reach(coordinator, timeout, advice)
    # The runtime aborts the whole process (a C++ fatal error, many lines) when the others
    # do not join in time: a watchdog says so in one line first, and exits with code 2.
    joined = threading.Event()

    def watchdog():
        if not joined.wait(timeout):
            sys.stderr.write(f"particles: error: coordinator={coordinator!r}: not every process joined within "
                             f"{timeout} s; {advice}\n")
            sys.stderr.flush()
            os._exit(2)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=int(timeout) + 30)
    except Exception as e:  # the runtime raises its own types (XlaRuntimeError, RuntimeError)
        raise ValueError(f"coordinator={coordinator!r}: joining failed ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:160]}); {advice}.") from None
    finally:
        joined.set()


def _reach(address: str, timeout: float, advice: str) -> None:
    """Wait until process 0's coordinator accepts connections; ValueError after `timeout`."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ValueError(f"coordinator={address!r} is not reachable after {timeout} s; {advice}.") from None
            time.sleep(0.2)


def _check_address(address: str) -> None:
    host, _, port = str(address).rpartition(":")
    ok = bool(host) and port.isdigit() and 0 < int(port) < 65536
    if ok:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            try:
                socket.getaddrinfo(host, None)
            except OSError:
                ok = False
    if not ok:
        raise ValueError(f"coordinator={address!r} is not allowed: write host:port with a resolvable host and a "
                         "port in 1-65535 (e.g. 127.0.0.1:12345).")


def is_main() -> bool:
    """True in process 0, the one process that writes files."""
    return jax.process_index() == 0


def processes() -> int:
    return jax.process_count()


def put(values: dict, mesh) -> dict:
    """Flat numpy arrays (the same on every process) as global arrays sharded over `mesh`."""
    spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names[0]))
    if processes() == 1:
        return {k: jax.device_put(a, spec) for k, a in values.items()}
    return {k: jax.make_array_from_callback(a.shape, spec, lambda idx, a=a: a[idx]) for k, a in values.items()}


def gather(tree) -> dict:
    """A pytree of global (sharded) arrays as numpy on every process (one all-gather)."""
    if processes() == 1:
        return jax.tree_util.tree_map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
