"""Pairing a colour frame with the depth frame of (nearly) the same stamp.

Depth frames go into a small ring as they arrive (the subscription callback only stores the
message); the inference thread asks for the one nearest to the colour frame's stamp within a
tolerance. The ring never holds more than its capacity, so depth faster than colour drops the
oldest frames instead of building a backlog. No ROS imports: stamps are integer nanoseconds.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class StampRing(Generic[T]):
    """The last ``capacity`` (stamp, item) pairs, thread-safe."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._items: deque[tuple[int, T]] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, stamp_ns: int, item: T) -> None:
        with self._lock:
            self._items.append((stamp_ns, item))

    def nearest(self, stamp_ns: int, tolerance_ns: int) -> tuple[int, T] | None:
        """The (stamp, item) nearest to ``stamp_ns`` within ``tolerance_ns``, or None."""
        with self._lock:
            best = min(self._items, key=lambda entry: abs(entry[0] - stamp_ns), default=None)
        if best is None or abs(best[0] - stamp_ns) > tolerance_ns:
            return None
        return best

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def stamp_ns(header: object) -> int:
    """A ROS header's stamp in integer nanoseconds."""
    stamp = header.stamp  # type: ignore[attr-defined]
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
