"""A stream segmented by the live node and the same frames recorded and segmented offline give equal messages."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from mcap.reader import make_reader
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image

from fcclip_ros.msg import SegmentArray, Vocabulary

from ..core.jobs.recordings import write_recording
from .harness import (LATCHED, RELIABLE, TEST_CLASSES, TEST_STUFF, NodeProcess, demo_rgb, image_message, ros_list,
                      wait_ready)

pytestmark = pytest.mark.ros

NS = "/fcclip_test_bag"
TIMEOUT = 90.0
OUTPUTS = ("labels", "segment_ids", "segments", "detections", "overlay")


def recorded(path: Path) -> dict[tuple[str, tuple[int, int]], object]:
    """{(topic, header stamp): message} of a recording, deserialised by rclpy."""
    found = {}
    with path.open("rb") as stream:
        for schema, channel, message in make_reader(stream).iter_messages():
            package, _, name = schema.name.split("/")
            decoded = deserialize_message(message.data, getattr(importlib.import_module(f"{package}.msg"), name))
            stamp = (decoded.header.stamp.sec, decoded.header.stamp.nanosec)
            found[(channel.topic, stamp)] = decoded
    return found


def test_offline_messages_equal_the_live_nodes(reference_root, tmp_path, peer, vision_msgs_prefix, vision_msgs_module):
    weights = reference_root / "tiny" / "weights.pth"
    node = NodeProcess(reference_root, tmp_path / "logs", NS, env=vision_msgs_prefix.env(),
                       params={"cpu_threads": "1", "vocabulary": ros_list(TEST_CLASSES),
                               "vocabulary_stuff": ros_list(TEST_STUFF)})
    try:
        image = peer.node.create_publisher(Image, f"{NS}/image", RELIABLE)
        types = {"labels": Image, "segment_ids": Image, "segments": SegmentArray,
                 "detections": vision_msgs_module.Detection2DArray, "overlay": Image}
        live = {name: peer.collect(types[name], f"{node.fqn}/{name}") for name in OUTPUTS}
        vocabulary = peer.collect(Vocabulary, f"{node.fqn}/vocabulary", LATCHED)
        wait_ready(node, image)
        sent = []
        for k, name in enumerate(["chelsea.jpg", "astronaut.jpg", "rocket.jpg"]):
            msg = image_message(demo_rgb(name, 160), peer.next_stamp(), "camera")
            stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            image.publish(msg)
            for collector in live.values():
                collector.for_stamp(stamp, TIMEOUT)
            sent.append((msg, stamp))
        live_vocabulary = vocabulary.wait_for(lambda m: True, TIMEOUT, "the vocabulary")
    finally:
        node.kill()

    bag = write_recording(tmp_path / "stream.mcap",
                          [("/camera/image_raw", s[0] * 1_000_000_000 + s[1], msg) for msg, s in sent])
    script = Path(sys.executable).parent / "fcclip-segment"
    done = subprocess.run([str(script), str(bag), "-o", str(tmp_path / "out"), "--model-config", "fixture_tiny",
                           "--weights", str(weights), "--threads", "1", "--vocabulary", *TEST_CLASSES,
                           "--stuff", *TEST_STUFF], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    offline = recorded(tmp_path / "out" / "stream.mcap")
    compared = 0
    for _, stamp in sent:
        for name in OUTPUTS:
            node_message = live[name].for_stamp(stamp, TIMEOUT)
            assert offline[(f"/fcclip/camera/image_raw/{name}", stamp)] == node_message, name
            compared += 1
    assert compared == 15
    bag_vocabulary = next(m for (topic, _), m in offline.items() if topic == "/fcclip/vocabulary")
    for field in ("version", "class_ids", "labels", "synonyms", "is_thing"):
        assert getattr(bag_vocabulary, field) == getattr(live_vocabulary, field), field
