"""The driver of every run: the compiled row loop, chunks, progress, checkpoints and resume.

A discrete run (gd, sgd, gd_weights) is a [`Stepper`][] advanced through a save
[`Schedule`][]: one `lax.scan` over saved rows, an inner loop over the steps between them.
Without a progress bar, checkpoint or resume the whole run is one compiled call. Otherwise
[`drive`][] cuts it into about `CHUNKS` chunks — the same loop serves the flow's segments
and the sweeps' chunks of cells — updates the bar, and writes the result so far to the
checkpoint file after each chunk, atomically; an interrupted run resumes from that file
([`resume_point`][] checks that its settings and saved rows match), losing at most one chunk.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._io import jsonable
from ._progress import progress_bar

CHUNKS = 50
"""About how many chunks a run with a progress bar or a checkpoint is cut into."""

STOP_AFTER = "PARTICLES_STOP_AFTER_CHUNKS"
"""For tests only (TESTING.md): an interrupt (KeyboardInterrupt) after this many chunks of a
driven run, as Ctrl-C would raise it, to test checkpoints and resume."""


def int_dtype():
    return jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


class Stepper(eqx.Module):
    """One discrete integrator: `advance(state, k)` takes step k, `observe(state)` saves a row.

    Arrays (the problem, the rate) are dynamic fields and everything else is static, so a
    second call with new values reuses the compiled loop.
    """

    def advance(self, state, k):
        raise NotImplementedError

    def observe(self, state) -> dict:
        raise NotImplementedError

    def scores(self, state):
        raise NotImplementedError

    def finite(self, state) -> Array:
        """Whether the state is finite (a stepper may also check what it observes)."""
        leaves = [x for x in jax.tree_util.tree_leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact)]
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def scan_rows(stepper: Stepper, carry, gaps, uniform: Optional[int]):
    """Advance `carry = (state, step, first_bad)` through `gaps`, observing after each gap.

    Finiteness is checked once per saved row, not per step (a full pass over the state that
    cost ~18% of a memory-bound step). A non-finite state stays non-finite, so a bad row is
    replayed from its start, checking every step, to find the exact first bad step.
    """

    def steps(c, n, check: bool):
        def one(c):
            state, k, bad = c
            new = stepper.advance(state, k)
            if check:
                bad = jnp.where((bad < 0) & ~stepper.finite(new), k + 1, bad)
            return new, k + 1, bad

        if uniform is not None:
            c, _ = jax.lax.scan(lambda c, _: (one(c), None), c, None, length=uniform)
            return c
        return jax.lax.fori_loop(0, n, lambda _, c: one(c), c)

    def row(c, gap):
        end = steps(c, gap, check=False)
        went_bad = (c[2] < 0) & ~stepper.finite(end[0])
        bad = jax.lax.cond(went_bad, lambda: steps(c, gap, check=True)[2], lambda: c[2])
        end = (end[0], end[1], bad)
        return end, stepper.observe(end[0])

    return jax.lax.scan(row, carry, gaps)


def start(state0):
    """The loop's carry at step 0: (state, step 0, no bad step)."""
    return state0, jnp.asarray(0, int_dtype()), jnp.asarray(-1, int_dtype())


def first_row(stepper: Stepper, state) -> dict:
    return jax.tree_util.tree_map(lambda a: a[None], stepper.observe(state))


@eqx.filter_jit
def run_whole(stepper: Stepper, state0, gaps, uniform: Optional[int]):
    """A run without chunks as one compiled call: row 0, the scan and the joined rows.

    **Returns:** (last carry, rows, final scores). Under `vmap` (a batch of rates) every
    member shares the schedule.
    """
    carry, rows = scan_rows(stepper, start(state0), gaps, uniform)
    rows = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), first_row(stepper, state0), rows)
    return carry, rows, stepper.scores(carry[0])


run_chunk = eqx.filter_jit(scan_rows)
observe_start = eqx.filter_jit(first_row)


def chunk_size(n: int, cut: bool) -> int:
    """Rows (or cells) per chunk: all of them, or about n / CHUNKS when the run is cut."""
    return max(1, math.ceil(n / CHUNKS) if cut else n)


def drive(
    advance: Callable,
    carry,
    chunks: Sequence,
    *,
    sizes: Sequence[int],
    done: int = 0,
    on_chunk: Optional[Callable] = None,
    progress: bool = False,
    desc: str = "run",
    unit: str = "step",
) -> tuple:
    """Run `carry, piece = advance(carry, chunk)` over `chunks[done:]`, with a bar.

    **Arguments:**

    - `advance`: one chunk of work.
    - `carry`: the state before `chunks[done]`.
    - `chunks`: the chunks of the whole run; `sizes`: their work (for the bar).
    - `done`: chunks already done (a resumed run).
    - `on_chunk(carry, pieces, n_done)`: called after each chunk but the last (a
      checkpoint writes the result so far).
    - `progress`, `desc`, `unit`: the progress bar on stderr.

    **Returns:** (last carry, list of the new pieces).
    """
    pieces = []
    stop = os.environ.get(STOP_AFTER)
    with progress_bar(total=int(sum(sizes)), desc=desc, unit=unit, enabled=progress) as bar:
        bar.update(int(sum(sizes[:done])))
        for i in range(done, len(chunks)):
            if stop is not None and i - done >= int(stop):
                raise KeyboardInterrupt  # the tests' Ctrl-C (see STOP_AFTER)
            carry, piece = advance(carry, chunks[i])
            pieces.append(piece)
            bar.update(int(sizes[i]))
            if on_chunk is not None and i + 1 < len(chunks):
                on_chunk(carry, pieces, i + 1)
    return carry, pieces


def join(pieces: Sequence[dict]) -> dict:
    """Concatenate row pieces (dicts of arrays, or None-free pytrees) along axis 0, in numpy."""
    return jax.tree_util.tree_map(lambda *a: np.concatenate([np.asarray(x) for x in a]), *pieces)


def resume_point(metadata: dict, settings: dict, done_rows, rows, *, what: str = "resume=") -> int:
    """How many rows of this run a saved partial run already holds; ValueError if it is not one.

    A partial run continues this run when it was made with the same `settings` (the
    integrator and everything that shapes its rows: rates, seeds, tolerances, what is
    saved) and its saved rows (steps, times or cells) are a prefix of this run's `rows`.
    """
    theirs = metadata.get("settings")
    if theirs is None:
        raise ValueError(f"{what} has no record of its settings (a file from an older version or another "
                         "tool); it cannot be continued: rerun from the start.")
    ours = jsonable(settings)
    for key in sorted(set(theirs) | set(ours)):
        if theirs.get(key) != ours.get(key):
            raise ValueError(f"{what} comes from a run with {key}={theirs.get(key)!r}, not {ours.get(key)!r}; "
                             "use the same settings to continue it.")
    done_rows, rows = np.asarray(done_rows), np.asarray(rows)
    n = len(done_rows)
    if n > len(rows) or not np.array_equal(done_rows, rows[:n]):
        raise ValueError(f"{what} saved rows {done_rows[:3].tolist()}..{done_rows[-1:].tolist()} are not a prefix "
                         f"of this run's rows (last {rows[-1]}); use the same steps or times and save settings.")
    return n
