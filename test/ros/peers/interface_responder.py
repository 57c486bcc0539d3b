"""Peer process for test_interfaces: answers images with a SegmentArray and serves SetVocabulary.

Runs until it has answered one image and one service call (or times out), then exits 0.
"""
from __future__ import annotations

import sys
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
from sensor_msgs.msg import Image, RegionOfInterest

from fcclip_ros.msg import Segment, SegmentArray
from fcclip_ros.srv import SetVocabulary


class Responder(Node):
    def __init__(self) -> None:
        super().__init__("interface_responder")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self.segments_pub = self.create_publisher(SegmentArray, "segments", qos)
        self.create_subscription(Image, "image", self.on_image, qos)
        self.create_service(SetVocabulary, "set_vocabulary", self.on_set_vocabulary)
        self.answered_image = False
        self.answered_call = False
        self.version = 7

    def on_image(self, image: Image) -> None:
        # Derive every field from the received image, so the peer can check what crossed the wire.
        out = SegmentArray()
        out.header = image.header
        out.vocabulary_version = self.version
        out.height, out.width = image.height, image.width
        pixel_sum = sum(image.data)
        segment = Segment(
            id=1, class_id=3, label=image.encoding, score=0.5, is_thing=True,
            area=pixel_sum, bbox=RegionOfInterest(x_offset=1, y_offset=2, width=image.width, height=image.height),
            centroid_x=float(image.step), centroid_y=float(len(image.data)))
        out.segments = [segment]
        self.segments_pub.publish(out)
        self.answered_image = True

    def on_set_vocabulary(self, request: SetVocabulary.Request, response: SetVocabulary.Response):
        self.version += 1
        response.success = True
        response.message = f"{len(request.classes)} classes, stuff: {','.join(request.stuff)}"
        response.version = self.version
        response.labels = [entry.split(",")[0].strip() for entry in request.classes]
        response.class_ids = list(range(len(request.classes)))
        self.answered_call = True
        return response


def main() -> int:
    rclpy.init()
    node = Responder()
    deadline = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 1 else 60)
    print("READY", flush=True)
    try:
        while time.monotonic() < deadline and not (node.answered_image and node.answered_call):
            rclpy.spin_once(node, timeout_sec=0.1)
        # Give the last reply time to leave before the process goes away.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    return 0 if (node.answered_image and node.answered_call) else 1


if __name__ == "__main__":
    sys.exit(main())
