"""launch_testing: `segment.launch.py` with autostart true comes up active by itself; a run-time
parameter change applies to the next frame; the node exits 0 when the launch stops it."""
import sys
import unittest
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (CAMERA, TIMEOUT, LaunchedNode, Peer, TestShutdown, lifecycle_state, shipped_launch,  # noqa: E402,F401
                    tiny_model_arguments, wait_until)


@pytest.mark.launch_test
def generate_test_description():
    return shipped_launch("segment.launch.py", tiny_model_arguments())


class TestAutostart(unittest.TestCase):
    def test_active_by_itself_and_parameters_apply_to_the_next_frame(self, proc_output):
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from fcclip_ros.msg import SegmentArray

        proc_output.assertWaitFor("ready:", timeout=TIMEOUT)
        peer = Peer("launch_autostart_peer")
        try:
            self.assertEqual(lifecycle_state(peer, LaunchedNode), "active")
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            camera = peer.node.create_publisher(Image, CAMERA, qos)
            received = []
            peer.node.create_subscription(SegmentArray, f"{LaunchedNode.fqn}/segments", received.append, qos)
            wait_until(lambda: camera.get_subscription_count() > 0, TIMEOUT, "the node's subscription")

            def segments_of_next_frame(sec):
                rgb = np.random.default_rng(1).integers(0, 255, size=(96, 128, 3), dtype=np.uint8)
                msg = Image(height=96, width=128, encoding="rgb8", step=128 * 3, data=rgb.tobytes())
                msg.header.stamp.sec = sec
                camera.publish(msg)
                return wait_until(lambda: next((m for m in list(received) if m.header.stamp.sec == sec), None),
                                  TIMEOUT, f"the segments of frame {sec}").segments

            self.assertGreater(len(segments_of_next_frame(1)), 0)
            value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=1.0)
            reply = peer.call(SetParameters, f"{LaunchedNode.fqn}/set_parameters",
                              SetParameters.Request(parameters=[Parameter(name="object_mask_threshold", value=value)]))
            self.assertTrue(reply.results[0].successful, reply.results[0].reason)
            self.assertEqual(len(segments_of_next_frame(2)), 0)
        finally:
            peer.close()

