"""One inference thread fed by a latest-frame slot, and the statistics the node reports.

Why a slot and not a queue: a camera delivers frames faster than a large model processes them.
A queue would grow without bound and every output would get later and later; a one-frame slot
keeps only the newest frame, so the result is always about the most recent image, memory stays
fixed, and every frame that was replaced before it could be processed is counted as dropped.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

import numpy as np

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item: ``put`` replaces what is there, ``take`` waits for it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> T | None:
        """Store ``item``; return the item it replaced (a dropped frame), else None."""
        with self._cond:
            replaced, self._item = self._item, item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The pending item (the slot is then empty); None after ``timeout`` or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> T | None:
        """Wake every waiter for good; return the item left behind, if any."""
        with self._cond:
            self._closed = True
            left, self._item = self._item, None
            self._cond.notify_all()
            return left

    @property
    def pending(self) -> bool:
        with self._cond:
            return self._item is not None


def percentile_ms(samples: list[float], q: float) -> float:
    """The q-th percentile of samples in seconds, in milliseconds (NaN when empty)."""
    return float(np.percentile(samples, q) * 1e3) if samples else float("nan")


@dataclass(frozen=True)
class StatsSnapshot:
    frames_in: int
    frames_processed: int
    frames_dropped: int
    frames_invalid: int
    frames_failed: int
    latency_ms: dict[str, float]  # receive -> published, over the recent window: p50, p90, p99, max
    inference_ms: dict[str, float]  # model time alone, same window
    processed_per_s: float  # over the recent window
    last_error: str


class FrameStats:
    """Thread-safe frame counters and windows of recent latencies."""

    PERCENTILES = (50, 90, 99)

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self._latency: deque[float] = deque(maxlen=window)
        self._inference: deque[float] = deque(maxlen=window)
        self._done_at: deque[float] = deque(maxlen=window)
        self.frames_in = self.frames_processed = self.frames_dropped = 0
        self.frames_invalid = self.frames_failed = 0
        self.last_error = ""

    def count_in(self) -> None:
        with self._lock:
            self.frames_in += 1

    def count_dropped(self) -> None:
        with self._lock:
            self.frames_dropped += 1

    def count_invalid(self, reason: str) -> None:
        with self._lock:
            self.frames_invalid += 1
            self.last_error = reason

    def count_failed(self, reason: str) -> None:
        with self._lock:
            self.frames_failed += 1
            self.last_error = reason

    def count_processed(self, latency_s: float, inference_s: float) -> None:
        with self._lock:
            self.frames_processed += 1
            self._latency.append(latency_s)
            self._inference.append(inference_s)
            self._done_at.append(time.monotonic())

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            latency, inference, done = list(self._latency), list(self._inference), list(self._done_at)
            counts = (self.frames_in, self.frames_processed, self.frames_dropped,
                      self.frames_invalid, self.frames_failed)
            last_error = self.last_error

        def summary(samples: list[float]) -> dict[str, float]:
            out = {f"p{q}": percentile_ms(samples, q) for q in self.PERCENTILES}
            out["max"] = max(samples) * 1e3 if samples else float("nan")
            return out

        span = done[-1] - done[0] if len(done) > 1 else 0.0
        rate = (len(done) - 1) / span if span > 0 else 0.0
        return StatsSnapshot(*counts, latency_ms=summary(latency), inference_ms=summary(inference),
                             processed_per_s=rate, last_error=last_error)


class InferenceWorker(Generic[T]):
    """Runs ``handle(item)`` on the newest submitted item, one at a time, in its own thread.

    ``submit`` never blocks: it replaces the pending item (counted as dropped). ``handle`` is
    expected to deal with its own errors; anything it lets through is passed to ``on_error``
    and the worker keeps going.
    """

    def __init__(self, handle: Callable[[T], None], stats: FrameStats,
                 on_error: Callable[[Exception], None] | None = None,
                 name: str = "fcclip-inference") -> None:
        self._handle = handle
        self._on_error = on_error
        self.stats = stats
        self._slot: LatestSlot[T] = LatestSlot()
        self._stopping = threading.Event()
        self._busy = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: T) -> None:
        self.stats.count_in()
        if self._stopping.is_set():
            self.stats.count_dropped()
            return
        if self._slot.put(item) is not None:
            self.stats.count_dropped()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def busy(self) -> bool:
        """True while ``handle`` runs."""
        return self._busy.is_set()

    def stop(self, timeout: float) -> bool:
        """Stop taking frames and wait up to ``timeout`` s for the current one; True if the thread ended."""
        self._stopping.set()
        if self._slot.close() is not None:
            self.stats.count_dropped()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            item = self._slot.take()
            if item is None:
                continue
            self._busy.set()
            try:
                self._handle(item)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any frame
                if self._on_error is not None and not self._stopping.is_set():
                    self._on_error(error)
            finally:
                self._busy.clear()
