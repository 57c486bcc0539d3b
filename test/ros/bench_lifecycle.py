"""Benchmark of the managed node (prints numbers; not a test): configure / cleanup time and the
memory cleanup gives back, a 50-call set_vocabulary burst, and the cost of refusing a PNG that
declares 30000 x 30000 pixels from its header.

    .venv/bin/python test/ros/bench_lifecycle.py [--cycles 3]

Runs the tiny reference model (../shared/reference) as a real node process over loopback DDS.
"""
from __future__ import annotations

import argparse
import importlib.util
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
_spec = importlib.util.spec_from_file_location("fcclip_test_root_conftest", HERE.parent / "conftest.py")
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)  # test/conftest.py: the reference folder, the PNG bomb, loopback DDS on a random domain
from harness import (RELIABLE, NodeProcess, Peer, change_state, demo_rgb, image_message, lifecycle_state,  # noqa: E402
                     wait_until)
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from fcclip_ros import conversions as conv  # noqa: E402
from fcclip_ros.msg import SegmentArray  # noqa: E402
from fcclip_ros.srv import SetVocabulary  # noqa: E402


def header_rejection_us(repeats: int = 200) -> float:
    bomb = CompressedImage(format="png", data=conv.byte_field(np.frombuffer(_root.png_declaring(30000, 30000), np.uint8)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            conv.compressed_to_rgb(bomb)
        except conv.FrameError:
            pass
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3, help="configure/activate/deactivate/cleanup cycles")
    args = parser.parse_args()
    print(f"PNG declaring 30000x30000 refused from its header: median {header_rejection_us():.1f} us (200 runs)")
    peer = Peer("bench_lifecycle_peer")
    node = NodeProcess(_root.reference_dir(), Path(tempfile.mkdtemp(prefix="bench_lifecycle_")), "/bench_lifecycle",
                       params={"autostart": "false"})
    try:
        lifecycle_state(peer, node, 60)
        camera = peer.node.create_publisher(Image, "/bench_lifecycle/image", RELIABLE)
        segments = peer.collect(SegmentArray, f"{node.fqn}/segments")
        released = []
        for cycle in range(args.cycles):
            start = time.monotonic()
            assert change_state(peer, node, "configure")
            configure_s = time.monotonic() - start
            assert change_state(peer, node, "activate")
            wait_until(lambda: camera.get_subscription_count() > 0, 60, "the subscription")
            stamp = peer.next_stamp()
            camera.publish(image_message(demo_rgb("rocket.jpg", 160), stamp, "bench"))
            segments.for_stamp(stamp, 60)
            loaded_mb = node.rss_mb()
            assert change_state(peer, node, "deactivate")
            start = time.monotonic()
            assert change_state(peer, node, "cleanup")
            cleanup_s = time.monotonic() - start
            after_mb = node.rss_mb()
            released.append(loaded_mb - after_mb)
            print(f"cycle {cycle}: configure {configure_s:.2f} s, RSS {loaded_mb:.0f} MB loaded -> {after_mb:.0f} MB "
                  f"after cleanup ({loaded_mb - after_mb:.0f} MB released, cleanup {cleanup_s:.2f} s)")
        print(f"median released by cleanup: {statistics.median(released):.0f} MB")
        assert change_state(peer, node, "configure") and change_state(peer, node, "activate")
        clients = [peer.node.create_client(SetVocabulary, f"{node.fqn}/set_vocabulary") for _ in range(50)]
        for client in clients:
            client.wait_for_service(timeout_sec=30)
        start = time.monotonic()
        futures = [client.call_async(SetVocabulary.Request(classes=[f"burst {i} a", f"burst {i} b"]))
                   for i, client in enumerate(clients)]
        wait_until(lambda: all(f.done() for f in futures), 300, "the burst's answers")
        succeeded = sum(f.result().success for f in futures)
        print(f"50 concurrent set_vocabulary calls: {succeeded} succeeded, all answered within "
              f"{time.monotonic() - start:.2f} s")
        print(f"exit status after SIGINT: {node.stop(signal.SIGINT)}")
    finally:
        node.kill()
        peer.close()


if __name__ == "__main__":
    main()
