"""Peer process for test_interfaces: sends an Image, waits for the SegmentArray, calls SetVocabulary.

Prints one JSON line with what it received, for the test to check.
"""
from __future__ import annotations

import json
import sys
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
from sensor_msgs.msg import Image

from fcclip_ros.msg import SegmentArray
from fcclip_ros.srv import SetVocabulary


def main() -> int:
    rclpy.init()
    node = Node("interface_requester")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    received: list[SegmentArray] = []
    node.create_subscription(SegmentArray, "segments", received.append, qos)
    image_pub = node.create_publisher(Image, "image", qos)
    client = node.create_client(SetVocabulary, "set_vocabulary")
    deadline = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 1 else 60)
    result: dict = {}
    try:
        image = Image(height=2, width=3, encoding="rgb8", is_bigendian=0, step=9, data=bytes(range(18)))
        image.header.frame_id = "camera_optical"
        image.header.stamp.sec, image.header.stamp.nanosec = 1234, 5678
        # Publish until the answer arrives: discovery on loopback takes a moment.
        while not received and time.monotonic() < deadline:
            if image_pub.get_subscription_count() > 0:
                image_pub.publish(image)
            rclpy.spin_once(node, timeout_sec=0.2)
        if received:
            msg = received[0]
            seg = msg.segments[0]
            result["segments"] = {
                "frame_id": msg.header.frame_id, "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
                "vocabulary_version": msg.vocabulary_version, "height": msg.height, "width": msg.width,
                "label": seg.label, "area": seg.area, "class_id": seg.class_id, "is_thing": seg.is_thing,
                "bbox": [seg.bbox.x_offset, seg.bbox.y_offset, seg.bbox.width, seg.bbox.height],
                "centroid": [seg.centroid_x, seg.centroid_y], "score": seg.score,
            }
        if client.wait_for_service(timeout_sec=max(0.1, deadline - time.monotonic())):
            future = client.call_async(SetVocabulary.Request(
                classes=["person, child, man, woman", "floor"], stuff=["floor"]))
            rclpy.spin_until_future_complete(node, future, timeout_sec=max(0.1, deadline - time.monotonic()))
            if future.done():
                response = future.result()
                result["service"] = {
                    "success": response.success, "message": response.message, "version": response.version,
                    "class_ids": list(response.class_ids), "labels": list(response.labels)}
    finally:
        node.destroy_node()
        rclpy.shutdown()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
