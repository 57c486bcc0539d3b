"""launch_testing: the demo launch on a machine without rviz2 (use_rviz defaults to true) skips
RViz and still segments the bundled photos."""
import sys
import unittest
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Peer, TestShutdown, shipped_launch, wait_until  # noqa: E402,F401

TIMEOUT = 180.0


@pytest.mark.launch_test
def generate_test_description():
    return shipped_launch("segment_demo.launch.py", {"device": "cpu", "rate": "2.0"})


class TestDemoWithoutRviz(unittest.TestCase):
    def test_rviz_is_skipped_with_a_warning_and_frames_are_segmented(self, proc_output):
        # The launch's own warning (rviz2 missing) goes to the launch log: test_launch.py checks it.
        proc_output.assertWaitFor("ready:", timeout=TIMEOUT)
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from fcclip_ros.msg import SegmentArray

        peer = Peer("launch_demo_peer")
        try:
            received = []
            peer.node.create_subscription(SegmentArray, "/segment_node/segments", received.append,
                                          QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
            wait_until(lambda: received, TIMEOUT, "segments of a demo photo")
            self.assertGreater(received[0].height, 0)
        finally:
            peer.close()

