"""launch_testing: `segment.launch.py autostart:=false` leaves the node unconfigured; the
transitions a lifecycle manager (or `ros2 lifecycle set`) sends bring it up and down."""
import sys
import unittest
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (CAMERA, TIMEOUT, LaunchedNode, Peer, TestShutdown, change_state, lifecycle_state,  # noqa: E402,F401
                    shipped_launch, tiny_model_arguments, wait_until)


@pytest.mark.launch_test
def generate_test_description():
    arguments = {**tiny_model_arguments(), "autostart": "false"}
    return shipped_launch("segment.launch.py", arguments)


class TestManualTransitions(unittest.TestCase):
    def test_unconfigured_until_told_then_every_transition(self, proc_output):
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        peer = Peer("launch_manual_peer")
        try:
            self.assertEqual(lifecycle_state(peer, LaunchedNode), "unconfigured")
            camera = peer.node.create_publisher(Image, CAMERA, QoSProfile(depth=1))
            self.assertEqual(camera.get_subscription_count(), 0)
            self.assertTrue(change_state(peer, LaunchedNode, "configure"))
            self.assertEqual(lifecycle_state(peer, LaunchedNode), "inactive")
            self.assertTrue(change_state(peer, LaunchedNode, "activate"))
            proc_output.assertWaitFor("ready:", timeout=TIMEOUT)
            self.assertEqual(lifecycle_state(peer, LaunchedNode), "active")
            wait_until(lambda: camera.get_subscription_count() > 0, TIMEOUT, "the subscription")
            self.assertTrue(change_state(peer, LaunchedNode, "deactivate"))
            self.assertTrue(change_state(peer, LaunchedNode, "cleanup"))
            self.assertEqual(lifecycle_state(peer, LaunchedNode), "unconfigured")
            proc_output.assertWaitFor("cleaned up: model released", timeout=TIMEOUT)
        finally:
            peer.close()

