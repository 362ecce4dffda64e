"""Compile every bucket once, at start-up, in a background thread.

JAX compiles a function the first time it meets a new shape; the explorer's shapes are
fixed by its buckets (`_compute`), so running each bucket once with default settings
compiles everything a slider can ask for. The tasks run in order (the first page's first);
a view that needs a bucket not yet compiled asks for it ([`Warmup.want`][]) and shows a
"compiling" state until it is ready.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Hashable, Optional


class Warmup:
    """Ordered compile tasks run by one daemon thread.

    **Arguments:** `tasks`, a list of (key, label, fn); `fn()` compiles by running once.
    `lazy`: keys that wait until a view asks for them ([`want`][]) instead of compiling at
    start-up.
    """

    def __init__(self, tasks: list[tuple[Hashable, str, Callable[[], object]]], lazy=()):
        self._order = [k for k, _, _ in tasks]
        self._label = {k: label for k, label, _ in tasks}
        self._fn = {k: fn for k, _, fn in tasks}
        self._state = {k: "deferred" if k in set(lazy) else "pending" for k in self._order}
        self._error: dict = {}
        self.seconds: dict = {}
        self._cv = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        self.started = time.perf_counter()

    def start(self) -> "Warmup":
        """Start compiling in the background (once)."""
        if self._thread is None:
            self.started = time.perf_counter()
            self._thread = threading.Thread(target=self._run, name="particles-explore-warmup", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 0.0) -> bool:
        """Start no further task; wait up to `timeout` s for the one running. **Returns:**
        whether no compile is running (a compile cannot be interrupted)."""
        with self._cv:
            self._stopped = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _next(self):
        # Idle until a task is pending (a deferred one may be asked for later) or stop().
        with self._cv:
            while not self._stopped:
                for k in self._order:
                    if self._state[k] == "pending":
                        self._state[k] = "compiling"
                        return k
                self._cv.wait()
        return None

    def _run(self) -> None:
        while (key := self._next()) is not None:
            t = time.perf_counter()
            try:
                self._fn[key]()
                state = "ready"
            except Exception as e:  # a broken bucket must not stop the others: the view says why
                self._error[key] = f"{type(e).__name__}: {e}"
                state = "failed"
            with self._cv:
                self.seconds[key] = time.perf_counter() - t
                self._state[key] = state
                self._cv.notify_all()

    def ready(self, key) -> bool:
        """Whether `key` is compiled (unknown keys count as ready: nothing to compile)."""
        return self._state.get(key, "ready") == "ready"

    def error(self, key) -> Optional[str]:
        """Why compiling `key` failed, or None."""
        return self._error.get(key)

    def want(self, key) -> None:
        """Compile `key` next (a view is waiting for it)."""
        with self._cv:
            if key in self._order and self._state[key] in ("pending", "deferred"):
                self._state[key] = "pending"
                self._order.remove(key)
                self._order.insert(0, key)
                self._cv.notify_all()

    def wait(self, key, timeout: float = 600.0) -> bool:
        """Block until `key` is compiled or failed (for scripts and tests); True when ready."""
        end = time.perf_counter() + timeout
        with self._cv:
            if self._state.get(key) == "deferred":
                self._state[key] = "pending"
                self._cv.notify_all()
            while self._state.get(key, "ready") in ("pending", "compiling"):
                left = end - time.perf_counter()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return self.ready(key)

    def wait_all(self, timeout: float = 600.0) -> bool:
        """Block until every task (deferred ones too) has finished; True when all are ready."""
        return all(self.wait(k, timeout) for k in list(self._order))

    def label(self, key) -> str:
        return self._label.get(key, str(key))

    def progress(self) -> tuple[int, int]:
        """(tasks finished, tasks in all)."""
        with self._cv:
            done = sum(s in ("ready", "failed") for s in self._state.values())
            total = sum(s != "deferred" for s in self._state.values())
        return done, total
