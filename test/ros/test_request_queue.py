"""RequestQueue: jobs run one at a time in arrival order; beyond the depth a job is refused, never lost."""
from __future__ import annotations

import threading

import pytest

from fcclip_ros.request_queue import RequestQueue


def test_jobs_run_in_order_and_a_full_queue_refuses() -> None:
    queue = RequestQueue(depth=3)
    gate = threading.Event()
    ran: list[int] = []
    done = threading.Event()

    def job(i: int):
        def run() -> None:
            if i == 0:
                gate.wait(10)  # the first job holds the worker while the others queue up
            ran.append(i)
            if i == 3:
                done.set()
        return run

    assert queue.submit(job(0))
    threading.Event().wait(0.2)  # the worker has taken job 0: three places are free again
    accepted = [queue.submit(job(i)) for i in range(1, 6)]
    assert accepted == [True, True, True, False, False]
    assert queue.waiting == 3 and queue.busy
    gate.set()
    assert done.wait(10)
    assert ran == [0, 1, 2, 3]
    left, finished = queue.close(5)
    assert left == [] and finished and not queue.busy
    assert not queue.submit(job(9)), "a closed queue takes nothing"


def test_a_failing_job_does_not_stop_the_queue_and_close_returns_waiting_jobs() -> None:
    queue = RequestQueue(depth=5)
    gate = threading.Event()
    ran: list[str] = []

    def boom() -> None:
        ran.append("boom")
        raise RuntimeError("job failed")

    queue.submit(boom)
    queue.submit(lambda: (ran.append("after"), gate.wait(10)))
    threading.Event().wait(0.3)
    waiting = [lambda: None, lambda: None]
    for job in waiting:
        queue.submit(job)
    gate.set()
    left, finished = queue.close(5)
    assert ran[:2] == ["boom", "after"] and finished
    assert len(left) <= 2


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RequestQueue(depth=0)
