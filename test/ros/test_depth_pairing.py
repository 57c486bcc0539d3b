"""StampRing: nearest stamp within a tolerance, bounded, thread-safe."""
from __future__ import annotations

import threading

import pytest

from fcclip_ros.depth_pairing import StampRing


def test_nearest_within_the_tolerance() -> None:
    ring: StampRing[str] = StampRing(4)
    for stamp in (100, 200, 300):
        ring.put(stamp, f"d{stamp}")
    assert ring.nearest(210, 20) == (200, "d200")
    assert ring.nearest(250, 60) in ((200, "d200"), (300, "d300"))
    assert ring.nearest(260, 50) == (300, "d300")
    assert ring.nearest(150, 49) is None
    assert StampRing[str](1).nearest(0, 10**9) is None


def test_the_ring_keeps_only_the_newest() -> None:
    ring: StampRing[int] = StampRing(3)
    for stamp in range(10):
        ring.put(stamp * 100, stamp)
    assert len(ring) == 3
    assert ring.nearest(0, 50) is None and ring.nearest(700, 0) == (700, 7)
    ring.clear()
    assert len(ring) == 0
    with pytest.raises(ValueError, match="capacity"):
        StampRing(0)


def test_concurrent_puts_stay_bounded() -> None:
    ring: StampRing[int] = StampRing(5)
    threads = [threading.Thread(target=lambda o=o: [ring.put(o * 1000 + i, i) for i in range(500)])
               for o in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ring) == 5
