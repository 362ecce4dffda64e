"""How [`gd_vocab`][] lays a problem out on devices: the mesh, the padding, the memory
estimate that chooses whether U's rows are split, and the placement of the inputs."""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from . import _validate as v
from . import _vocab_kernel as K
from ._problem import default_dtype


@dataclasses.dataclass(frozen=True)
class VocabPlan:
    """How [`gd_vocab`][] lays a problem out on devices; see [`vocab_plan`][].

    **Fields:** `mesh` (axes "rows" x "cols"), `row_shards` k_r and `u_shards` k_c
    (k_r * k_c devices), `chunk` (rows per block on each device), `N_pad` (inputs after
    padding with p = 0 rows to a multiple of k_r * chunk), `M_pad` (classes after padding to a
    multiple of k_c; padded classes score -inf), `bytes_per_device` (the estimate below) and
    `allreduce_bytes` (the gradient summed per step).

    Per-device estimate: the device's rows of E, p, targets, its block of U, W, the saved
    margins, and the chunk's working set of two (chunk x M_pad / k_c) blocks (scores and
    residual).
    """

    mesh: jax.sharding.Mesh
    row_shards: int
    u_shards: int
    chunk: int
    N_pad: int
    M_pad: int
    bytes_per_device: int
    allreduce_bytes: int

    @property
    def split(self) -> bool:
        return self.u_shards > 1


def _device_list(devices) -> list:
    available = jax.devices()
    if devices is None:
        return available
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            v.fail("devices", devices, f"{len(available)} devices are available (jax.devices()); "
                                       f"ask for 1 to {len(available)} or pass a list of devices")
        return available[: int(devices)]
    devices = list(devices)
    if not devices or not all(isinstance(dev, jax.Device) for dev in devices):
        raise ValueError("devices is not allowed: pass None (every device), an int, or a non-empty list of jax.Device.")
    if len(set(devices)) != len(devices):
        raise ValueError("devices is not allowed: it lists a device twice.")
    return devices


def _default_budget(devices) -> float:
    """80% of an accelerator's memory, or half the host's RAM split between its devices.

    Under `jax.distributed` every process must reach the same plan: hosts with different
    memory should pass `u_shards` (or `memory_budget`) explicitly."""
    here = [dev for dev in devices if dev.process_index == jax.process_index()] or devices
    stats = here[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return 0.8 * stats["bytes_limit"]
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8e9
    return 0.5 * ram / len(here)


def _estimate(N, M, d, k_r, k_c, chunk, T, cb, wb, save_margins):
    c = min(chunk, -(-N // k_r))
    N_pad = -(-N // (k_r * c)) * k_r * c
    M_pad = -(-M // k_c) * k_c
    n_r, m_b = N_pad // k_r, M_pad // k_c
    arrays = n_r * d * cb + n_r * (wb + 4) + m_b * d * cb + 4 * d * d * wb
    if save_margins:
        arrays += T * n_r * wb
    return c, N_pad, M_pad, arrays + 2 * c * m_b * cb


def vocab_plan(
    N: int,
    M: int,
    d: int,
    *,
    devices=None,
    u_shards: Optional[int] = None,
    chunk: int = 256,
    memory_budget: Optional[float] = None,
    saved_rows: int = 1,
    save_margins: bool = False,
    dtype=None,
    compute_dtype=None,
) -> VocabPlan:
    """The device layout [`gd_vocab`][] uses for an N x M problem in dimension d.

    **Arguments:** as [`gd_vocab`][]; `saved_rows` is the number of saved rows T.

    **Returns:** a [`VocabPlan`][]. With `u_shards=None` the smallest number of U shards
    (a divisor of the device count) whose per-device estimate fits `memory_budget` is chosen;
    if none fits, U is split over every device and a `ResourceWarning` says so.

    >>> vocab_plan(1000, 1000, 16, devices=1).u_shards
    1
    """
    devs = _device_list(devices)
    k = len(devs)
    chunk = v.check_count("chunk", chunk, 1)
    cb = jnp.dtype(compute_dtype or dtype or default_dtype()).itemsize
    wb = jnp.dtype(dtype or default_dtype()).itemsize
    divisors = [u for u in range(1, k + 1) if k % u == 0]
    if u_shards is None:
        if memory_budget is None:
            memory_budget = _default_budget(devs)
        else:
            v.check_positive("memory_budget", memory_budget)
        fits = [u for u in divisors if _estimate(N, M, d, k // u, u, chunk, saved_rows, cb, wb, save_margins)[3]
                <= memory_budget]
        if fits:
            u_shards = fits[0]
        else:
            u_shards = k
            need = _estimate(N, M, d, 1, k, chunk, saved_rows, cb, wb, save_margins)[3]
            warnings.warn(f"gd_vocab: about {need / 1e9:.2f} GB per device even with U split over all {k} devices "
                          f"(budget {memory_budget / 1e9:.2f} GB); lower `chunk` or add devices.", ResourceWarning,
                          stacklevel=3)
    else:
        u_shards = v.check_count("u_shards", u_shards, 1)
        if k % u_shards:
            v.fail("u_shards", u_shards, f"it must divide the number of devices ({k}): use one of {divisors}")
    k_r = k // u_shards
    c, N_pad, M_pad, need = _estimate(N, M, d, k_r, u_shards, chunk, saved_rows, cb, wb, save_margins)
    auto = (jax.sharding.AxisType.Auto,) * 2
    mesh = jax.make_mesh((k_r, u_shards), (K.ROWS, K.COLS), axis_types=auto, devices=devs)
    return VocabPlan(mesh=mesh, row_shards=k_r, u_shards=u_shards, chunk=c, N_pad=N_pad, M_pad=M_pad,
                     bytes_per_device=int(need), allreduce_bytes=d * d * wb)


def place(plan: VocabPlan, E, U, p, targets, dtype, compute_dtype):
    """Pad and lay the inputs out on the plan's mesh (every process passes the full arrays;
    each keeps its own shards, so this also works with `jax.distributed`)."""
    N, M = np.shape(E)[0], np.shape(U)[0]
    host = dict(
        E=np.pad(np.asarray(E, compute_dtype), ((0, plan.N_pad - N), (0, 0))),
        p=np.pad(np.asarray(p, dtype), (0, plan.N_pad - N)),
        t=np.pad(np.asarray(targets, np.int32), (0, plan.N_pad - N)),
        U=np.pad(np.asarray(U, compute_dtype), ((0, plan.M_pad - M), (0, 0))),
    )
    specs = dict(E=P(K.ROWS), p=P(K.ROWS), t=P(K.ROWS), U=P(K.COLS) if plan.split else P())
    out = {}
    for name, a in host.items():
        sharding = NamedSharding(plan.mesh, specs[name])
        out[name] = jax.make_array_from_callback(a.shape, sharding, lambda idx, a=a: a[idx])
    return out["E"], out["U"], out["p"], out["t"]


def _replicated(plan: VocabPlan, x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(plan.mesh, P()), lambda idx: x[idx])
