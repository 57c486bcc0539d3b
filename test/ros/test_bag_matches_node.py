"""A stream segmented by the live node and the same frames recorded and segmented offline give equal messages."""
from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from fcclip_ros.msg import SegmentArray, Vocabulary

from ..core.jobs.recordings import FRAME_ID, camera_info, depth_image, write_recording
from .harness import (LATCHED, RELIABLE, TEST_CLASSES, TEST_STUFF, NodeProcess, demo_rgb, image_message, ros_list,
                      stamp_of, wait_ready, wait_until)

pytestmark = pytest.mark.ros

NS = "/fcclip_test_bag"
TIMEOUT = 90.0
OUTPUTS = ("labels", "segment_ids", "segments", "detections", "overlay")


def recorded(path: Path) -> dict[tuple[str, tuple[int, int]], object]:
    """{(topic, header stamp): message} of a recording, deserialised by rclpy (markers: their first's stamp)."""
    found = {}
    with path.open("rb") as stream:
        for schema, channel, message in make_reader(stream).iter_messages():
            package, _, name = schema.name.split("/")
            decoded = deserialize_message(message.data, getattr(importlib.import_module(f"{package}.msg"), name))
            header = decoded.markers[0].header if isinstance(decoded, MarkerArray) else decoded.header  # no own header
            found[(channel.topic, (header.stamp.sec, header.stamp.nanosec))] = decoded
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


def test_offline_3d_messages_equal_the_live_nodes(reference_root, tmp_path, peer, vision_msgs_prefix,
                                                  vision_msgs_module):
    """use_depth: the same image, depth and camera_info through the node and through the bag tool."""
    weights = reference_root / "tiny" / "weights.pth"
    spatial_params = {"depth_tolerance": "0.01", "min_points": "5", "cloud_decimation": "2", "max_depth": "5"}
    node = NodeProcess(reference_root, tmp_path / "logs", NS, env=vision_msgs_prefix.env(),
                       params={"cpu_threads": "1", "vocabulary": ros_list(TEST_CLASSES),
                               "vocabulary_stuff": ros_list(TEST_STUFF), "use_depth": "true",
                               "publish_cloud": "true", **spatial_params})
    outputs = ("segments", "detections", "detections_3d", "markers", "cloud")
    types = {"segments": SegmentArray, "detections": vision_msgs_module.Detection2DArray,
             "detections_3d": vision_msgs_module.Detection3DArray, "markers": MarkerArray, "cloud": PointCloud2}
    recorded_inputs = []
    try:
        image = peer.node.create_publisher(Image, f"{NS}/image", RELIABLE)
        depth = peer.node.create_publisher(Image, f"{NS}/depth", RELIABLE)
        info = peer.node.create_publisher(CameraInfo, f"{NS}/camera_info", RELIABLE)
        live = {name: peer.collect(types[name], f"{node.fqn}/{name}") for name in outputs}
        wait_ready(node, image)
        wait_until(lambda: depth.get_subscription_count() and info.get_subscription_count(), TIMEOUT,
                   "the node to subscribe depth and camera_info")
        sent = []
        for k, name in enumerate(["chelsea.jpg", "astronaut.jpg", "rocket.jpg"]):
            rgb = demo_rgb(name, 160)
            msg = image_message(rgb, peer.next_stamp(), FRAME_ID)
            stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            stamp_ns = stamp[0] * 1_000_000_000 + stamp[1]
            camera = camera_info(rgb.shape[1], rgb.shape[0])
            camera.header = msg.header
            plane = depth_image(rgb.shape[1], rgb.shape[0], stamp_ns + 2_000_000, 1.0 + 0.5 * k)
            info.publish(camera)
            depth.publish(plane)
            time.sleep(0.2)  # the node has depth and camera_info before the frame
            image.publish(msg)
            for name in outputs:
                live_message(live, name, stamp)
            recorded_inputs += [("/camera/camera_info", stamp_ns - 2, camera),
                                ("/camera/depth", stamp_ns - 1, plane), ("/camera/image_raw", stamp_ns, msg)]
            sent.append(stamp)
    finally:
        node.kill()

    bag = write_recording(tmp_path / "rgbd.mcap", recorded_inputs)
    script = Path(sys.executable).parent / "fcclip-segment"
    options = [f"--{name.replace('_', '-')}" if i % 2 == 0 else name
               for pair in spatial_params.items() for i, name in enumerate(pair)]
    done = subprocess.run([str(script), str(bag), "-o", str(tmp_path / "out"), "--model-config", "fixture_tiny",
                           "--weights", str(weights), "--threads", "1", "--vocabulary", *TEST_CLASSES,
                           "--stuff", *TEST_STUFF, "--depth-topic", "/camera/depth",
                           "--camera-info-topic", "/camera/camera_info", "--publish-cloud", *options],
                          env=vision_msgs_prefix.env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "3D: 3 frame(s) with depth, 0 in 2D only" in done.stdout, done.stdout
    offline = recorded(tmp_path / "out" / "rgbd.mcap")
    compared = segments_3d = 0
    for stamp in sent:
        segments_3d += sum(s.has_3d for s in live_message(live, "segments", stamp).segments)
        for name in outputs:
            assert offline[(f"/fcclip/camera/image_raw/{name}", stamp)] == live_message(live, name, stamp), name
            compared += 1
    assert compared == 15
    assert segments_3d >= 2, "the node paired depth: the comparison includes segments in 3D"


def live_message(live: dict, name: str, stamp: tuple[int, int]) -> object:
    if name == "markers":
        return live[name].wait_for(lambda m: m.markers and stamp_of(m.markers[0]) == stamp, TIMEOUT, "markers")
    return live[name].for_stamp(stamp, TIMEOUT)
