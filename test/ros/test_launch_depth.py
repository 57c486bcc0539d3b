"""segment.launch.py with use_depth, depth_topic and camera_info_topic, run by the real
``ros2 launch`` (from ../shared/ros-tools): the remapped inputs are subscribed and a colour
frame with its depth comes out as 3D markers."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import Marker, MarkerArray

from fcclip_ros.conversions import byte_field

from .harness import PARAMS_FILE, RELIABLE, TEST_CLASSES, TEST_STUFF, Peer, demo_rgb, image_message, wait_until

pytestmark = pytest.mark.ros
ROS2 = Path(sys.executable).parent / "ros2"


@pytest.fixture
def launched(reference_root, tmp_path):
    if not ROS2.exists():
        pytest.skip("the ros2 CLI (../shared/ros-tools) is not installed")
    params = yaml.safe_load(PARAMS_FILE.read_text())
    params["/**"]["ros__parameters"].update(vocabulary=TEST_CLASSES, vocabulary_stuff=TEST_STUFF)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    log = (tmp_path / "launch.log").open("w")
    process = subprocess.Popen(
        [str(ROS2), "launch", "fcclip_ros", "segment.launch.py", "namespace:=launch_depth",
         f"params_file:={params_file}", "model_config:=fixture_tiny", "device:=cpu",
         f"weights:={reference_root / 'tiny' / 'weights.pth'}", "camera_topic:=/cam/color",
         "use_depth:=true", "depth_topic:=/cam/aligned_depth", "camera_info_topic:=/cam/color_info"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"})
    try:
        yield process, tmp_path / "launch.log"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


def test_launch_arguments_remap_depth_and_camera_info(launched) -> None:
    process, log = launched
    peer = Peer("test_launch_depth_peer")
    try:
        image = peer.node.create_publisher(Image, "/cam/color", RELIABLE)
        depth = peer.node.create_publisher(Image, "/cam/aligned_depth", RELIABLE)
        info = peer.node.create_publisher(CameraInfo, "/cam/color_info", RELIABLE)
        markers = peer.collect(MarkerArray, "/launch_depth/segment_node/markers")

        def subscribed() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"ros2 launch exited:\n{log.read_text()[-3000:]}")
            return all(p.get_subscription_count() > 0 for p in (image, depth, info))

        wait_until(subscribed, 120, "the launched node to subscribe the remapped topics")
        rgb = demo_rgb("chelsea.jpg", width=160)
        h, w = rgb.shape[:2]
        stamp = (77, 0)
        msg = CameraInfo(width=w, height=h, k=[120.0, 0, (w - 1) / 2, 0, 120.0, (h - 1) / 2, 0, 0, 1])
        msg.header.frame_id = "cam_optical"
        info.publish(msg)
        plane = Image(height=h, width=w, encoding="32FC1", step=4 * w)
        plane.header.frame_id = "cam_optical"
        plane.header.stamp.sec = stamp[0]
        plane.data = byte_field(np.full((h, w), 1.25, np.float32))
        depth.publish(plane)
        time.sleep(0.3)
        image.publish(image_message(rgb, stamp, "cam_optical"))
        found = markers.wait_for(lambda m: len(m.markers) > 1, 90, "3D markers from the launched node")
        boxes = [m for m in found.markers if m.type == Marker.CUBE]
        assert boxes and all(abs(b.pose.position.z - 1.25) < 1e-3 for b in boxes)
        assert all(m.header.frame_id == "cam_optical" for m in found.markers)
    finally:
        peer.close()
