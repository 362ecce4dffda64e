"""Sweeps across processes and hosts with JAX's multi-controller runtime (`jax.distributed`).

Launch one process per host (or per GPU), each running the same program; call
`initialize(...)` first (the command line: `particles-sweep --coordinator HOST:PORT
--num-processes P --process-id I`, or `--distributed` under SLURM). `particles.sweep` then
shares every chunk of cells among all devices of all processes, and only process 0
(`is_main()`) writes files. See the README's "Beyond one machine" for a SLURM example and
what travels between processes.
"""

from ._distributed import TIMEOUT as TIMEOUT, initialize as initialize, is_main as is_main, processes as processes
