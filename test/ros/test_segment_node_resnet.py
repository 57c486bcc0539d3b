"""The node runs a ResNet-CLIP model chosen by name, and publishes the official segmentation.

The shared ResNet fixture (``rn_tiny``) through the node executable over DDS: the segment-id
image and the SegmentArray of its first test image equal the official panoptic result.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sensor_msgs.msg import Image

from fcclip_ros.msg import SegmentArray

from .harness import RELIABLE, NodeProcess, Peer, image_message, ros_list, wait_ready, wait_until

pytestmark = pytest.mark.ros

NS = "/fcclip_test_resnet"


def test_resnet_model_segments_like_the_official_code(reference_root, tmp_path, peer: Peer) -> None:
    folder = reference_root / "rn_tiny"
    vocab = json.loads((folder / "vocab.json").read_text())
    classes = vocab["stuff_classes"]
    stuff = [c.split(",")[0].strip() for c, thing in zip(classes, vocab["isthing"]) if not thing]
    params = {"model_config": "fixture_rn_tiny", "weights": str(folder / "weights.pth"), "input_short_side": "128",
              "vocabulary": ros_list(classes), "vocabulary_stuff": ros_list(stuff)}
    node = NodeProcess(reference_root, tmp_path, NS, params=params, tiny_model=False)
    try:
        publisher = peer.node.create_publisher(Image, f"{NS}/image", RELIABLE)
        segment_ids = peer.collect(Image, f"{node.fqn}/segment_ids")
        segments = peer.collect(SegmentArray, f"{node.fqn}/segments")
        wait_ready(node, publisher)
        rgb = np.load(folder / "inputs.npz")["image0_orig_rgb"]
        stamp = peer.next_stamp()
        publisher.publish(image_message(rgb, stamp, "rn_camera"))

        def arrived():
            ids = [m for m in segment_ids.snapshot() if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp]
            segs = [m for m in segments.snapshot() if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp]
            return (ids[0], segs[0]) if ids and segs else None

        ids_msg, segs_msg = wait_until(arrived, 120.0, "the outputs of the ResNet model")
    finally:
        node.kill()
    expected = torch.load(folder / "expected.pt", weights_only=False)["images"][0]
    ids = np.frombuffer(ids_msg.data, np.int32).reshape(ids_msg.height, ids_msg.width)
    np.testing.assert_array_equal(ids, expected["panoptic_seg"].numpy())
    assert [(s.id, s.class_id, s.is_thing) for s in segs_msg.segments] == [
        (s["id"], s["category_id"], s["isthing"]) for s in expected["segments_info"]]
    assert {s.label for s in segs_msg.segments} == {"dog"}
