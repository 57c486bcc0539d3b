"""Pairing recorded depth and camera_info with colour frames (bag_depth), without a model."""
from __future__ import annotations

import pytest
from rclpy.serialization import serialize_message

from fcclip_core.jobs.units import BagDepthOptions
from fcclip_ros.bag_depth import WAIT_NS, RecordedDepth, bag_spatial_config
from fcclip_ros.node_config import parse_config

from ..core.jobs.recordings import camera_info, depth_image

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def cdr_depth(stamp_ns: int, metres: float = 1.0) -> bytes:
    return serialize_message(depth_image(8, 6, stamp_ns, metres))


def cdr_info(width: int) -> bytes:
    return serialize_message(camera_info(width, 6))


def test_settings_are_the_nodes() -> None:
    options = BagDepthOptions("/depth", "/info")
    assert bag_spatial_config(options) == parse_config({"use_depth": True}).spatial
    tuned = bag_spatial_config(BagDepthOptions("/depth", "/info", max_depth=3.0, min_points=7, publish_cloud=True,
                                               cloud_decimation=2, depth_tolerance=0.05, depth_scale=0.0001))
    assert (tuned.geometry.max_depth, tuned.geometry.min_points, tuned.geometry.depth_scale) == (3.0, 7, 0.0001)
    assert (tuned.publish_cloud, tuned.cloud_decimation, tuned.depth_tolerance) == (True, 2, 0.05)
    with pytest.raises(ValueError, match="invalid depth options") as error:
        bag_spatial_config(BagDepthOptions("/depth", "/info", min_points=0, cloud_decimation=100))
    assert "min_points" in str(error.value) and "cloud_decimation" in str(error.value)
    with pytest.raises(ValueError, match="same"):
        BagDepthOptions("/depth", "/depth")


def test_a_frame_waits_for_depth_logged_after_it() -> None:
    pairing = RecordedDepth(bag_spatial_config(BagDepthOptions("/depth", "/info")))  # buffer 10: waits for 5
    assert list(pairing.add_camera_info(cdr_info(8), T0)) == []
    assert list(pairing.add_depth(cdr_depth(T0 - 100 * MS, 0.5), T0)) == []
    assert list(pairing.add_frame(T0, T0 + 1, "frame")) == []
    for k in range(4):  # the frame's own depth comes second; 0.5 m is 100 ms off
        assert list(pairing.add_depth(cdr_depth(T0 + (3 if k == 1 else 40 + 40 * k) * MS, 1.0 + k), T0 + 2 + k)) == []
    ready = list(pairing.add_depth(cdr_depth(T0 + 300 * MS), T0 + 10))
    assert [p.payload for p in ready] == ["frame"]
    assert ready[0].depth is not None and ready[0].depth.header.stamp.nanosec == 3 * MS
    assert ready[0].camera_info is not None and ready[0].camera_info.width == 8


def test_a_frame_without_depth_waits_a_bounded_time() -> None:
    pairing = RecordedDepth(bag_spatial_config(BagDepthOptions("/depth", "/info")))
    assert list(pairing.add_frame(T0, T0, "first")) == []
    assert list(pairing.add_camera_info(cdr_info(8), T0 + 1)) == []
    assert list(pairing.add_camera_info(cdr_info(16), T0 + WAIT_NS)) == []
    released = list(pairing.add_frame(T0 + 50 * MS, T0 + WAIT_NS + 1, "second"))
    assert [p.payload for p in released] == ["first"] and released[0].depth is None
    assert list(pairing.add_camera_info(cdr_info(24), T0 + WAIT_NS + 2)) == []
    rest = list(pairing.finish())
    assert [p.payload for p in rest] == ["second"] and rest[0].depth is None
    assert rest[0].camera_info.width == 16, "the camera_info logged before the frame"


def test_the_first_frame_takes_the_camera_info_logged_just_after_it() -> None:
    pairing = RecordedDepth(bag_spatial_config(BagDepthOptions("/depth", "/info")))
    assert list(pairing.add_frame(T0, T0, "frame")) == []
    assert list(pairing.add_camera_info(cdr_info(8), T0 + 1)) == []
    [paired] = list(pairing.finish())
    assert paired.depth is None and paired.camera_info.width == 8
