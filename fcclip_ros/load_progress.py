"""Where a model load stands, for diagnostics while ``configure`` runs in another thread.

Why: loading the released model takes tens of seconds; a lifecycle manager or an operator
watching ``/diagnostics`` should see "loading, step 2 of 3, 12 s" rather than silence. ROS-free.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadSnapshot:
    active: bool  # a load is running
    step: int  # 1-based number of the running step (0 when none)
    steps: int
    what: str  # the running step in words
    elapsed_s: float  # since the load started

    def describe(self) -> str:
        return f"step {self.step}/{self.steps}: {self.what} ({self.elapsed_s:.1f} s)"


class LoadProgress:
    """Thread-safe: the loading thread calls ``begin``/``step``/``end``, anyone ``snapshot``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = LoadSnapshot(False, 0, 0, "", 0.0)
        self._started = 0.0

    def begin(self, steps: int) -> None:
        with self._lock:
            self._started = time.monotonic()
            self._state = LoadSnapshot(True, 0, steps, "starting", 0.0)

    def step(self, what: str) -> None:
        with self._lock:
            self._state = LoadSnapshot(True, self._state.step + 1, self._state.steps, what, 0.0)

    def end(self) -> None:
        with self._lock:
            self._state = LoadSnapshot(False, 0, 0, "", 0.0)

    def snapshot(self) -> LoadSnapshot:
        with self._lock:
            state = self._state
            elapsed = time.monotonic() - self._started if state.active else 0.0
        return LoadSnapshot(state.active, state.step, state.steps, state.what, elapsed)
