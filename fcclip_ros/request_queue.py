"""A bounded first-in-first-out queue of jobs run one at a time by a thread of its own.

Why: ``~/set_vocabulary`` requests may arrive in bursts (a planner resending, several clients).
Each one runs the text encoder for up to seconds. Taking requests off the middleware at once and
queueing them here means none is lost to a full DDS history; they run in arrival order, and a
request beyond the queue's depth is refused at once (the caller can say "busy") instead of
waiting forever. ROS-free: the node wraps it around its service.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable


class RequestQueue:
    """Runs submitted jobs in order on one worker thread; at most ``depth`` wait at any time."""

    def __init__(self, depth: int, name: str = "fcclip-requests") -> None:
        if depth < 1:
            raise ValueError(f"queue depth must be at least 1, got {depth}")
        self.depth = depth
        self._jobs: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._running = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job``; False (and nothing queued) when ``depth`` jobs already wait or it is closed."""
        with self._cond:
            if self._closed or len(self._jobs) >= self.depth:
                return False
            self._jobs.append(job)
            self._cond.notify()
            return True

    @property
    def waiting(self) -> int:
        """Jobs queued and not started yet."""
        with self._cond:
            return len(self._jobs)

    @property
    def busy(self) -> bool:
        """True while a job runs or waits."""
        with self._cond:
            return self._running or bool(self._jobs)

    def close(self, timeout: float) -> tuple[list[Callable[[], None]], bool]:
        """Stop taking jobs; return the ones that never started and whether the running one ended
        within ``timeout`` seconds."""
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return left, not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._closed)
                if self._closed:
                    return
                job = self._jobs.popleft()
                self._running = True
            try:
                job()
            except Exception:  # noqa: BLE001 - jobs report their own errors; one failing never stops the queue
                pass
            finally:
                with self._cond:
                    self._running = False
