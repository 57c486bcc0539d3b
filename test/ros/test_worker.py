"""Latest-frame slot and inference worker: newest frame wins, drops are counted, stop never hangs."""
from __future__ import annotations

import threading
import time

import pytest

from fcclip_ros.worker import FrameStats, InferenceWorker, LatestSlot

pytestmark = pytest.mark.ros


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def test_slot_keeps_only_the_newest_item() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is None
    assert slot.put(2) == 1
    assert slot.pending
    assert slot.take() == 2
    assert slot.take(timeout=0.01) is None


def test_close_wakes_a_waiting_taker() -> None:
    slot: LatestSlot[int] = LatestSlot()
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take()))
    taker.start()
    slot.close()
    taker.join(5)
    assert not taker.is_alive() and got == [None]


class GatedHandler:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.seen: list[int] = []

    def __call__(self, item: int) -> None:
        self.gate.wait()
        self.seen.append(item)


def busy_worker() -> tuple[InferenceWorker, GatedHandler, FrameStats]:
    """A started worker held inside the handler of frame 0 until ``handler.gate`` is set."""
    handler = GatedHandler()
    stats = FrameStats()
    worker = InferenceWorker(handler, stats)
    worker.start()
    worker.submit(0)
    wait_until(lambda: worker.busy)
    return worker, handler, stats


def test_frames_arriving_while_busy_collapse_into_the_newest() -> None:
    worker, handler, stats = busy_worker()
    for item in range(1, 10):
        worker.submit(item)
    handler.gate.set()
    wait_until(lambda: len(handler.seen) == 2 and not worker.busy)
    assert handler.seen == [0, 9]
    assert (stats.frames_in, stats.frames_dropped) == (10, 8)
    assert worker.stop(timeout=5)


def test_errors_are_reported_and_the_worker_continues() -> None:
    errors: list[Exception] = []
    seen: list[int] = []

    def handle(item: int) -> None:
        if item == 1:
            raise RuntimeError("bad frame")
        seen.append(item)

    worker = InferenceWorker(handle, FrameStats(), on_error=errors.append)
    worker.start()
    worker.submit(1)
    wait_until(lambda: errors)
    worker.submit(2)
    wait_until(lambda: seen)
    assert str(errors[0]) == "bad frame" and seen == [2]
    assert worker.stop(timeout=5)


def test_stop_does_not_wait_for_a_long_frame() -> None:
    worker, handler, stats = busy_worker()
    worker.submit(1)  # pending: dropped by stop
    assert worker.stop(timeout=0.05) is False
    worker.submit(2)  # after stop: counted and dropped
    assert (stats.frames_in, stats.frames_dropped) == (3, 2)
    handler.gate.set()
    wait_until(lambda: not worker.busy)
    assert worker.stop(timeout=5) and handler.seen == [0]


def test_stats_percentiles_and_rate() -> None:
    stats = FrameStats(window=100)
    for index in range(1, 101):
        stats.count_processed(latency_s=index / 1000, inference_s=0.001)
    stats.count_invalid("bad encoding")
    snap = stats.snapshot()
    assert snap.frames_processed == 100 and snap.frames_invalid == 1 and snap.last_error == "bad encoding"
    assert snap.latency_ms["p50"] == pytest.approx(50.5)
    assert snap.latency_ms["max"] == pytest.approx(100.0)
    assert snap.inference_ms["p99"] == pytest.approx(1.0)
    empty = FrameStats().snapshot()
    assert empty.processed_per_s == 0.0 and empty.latency_ms["p50"] != empty.latency_ms["p50"]  # NaN
