"""The node with depth: camera_info + depth + image in over DDS, 3D and tracking outputs out.

One node process (tiny model, use_depth, publish_cloud, tracker_min_hits 1) serves the module.
Depth images are constant planes whose distance encodes their stamp, so every 3D output shows
which depth frame was paired with the colour frame.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from visualization_msgs.msg import Marker, MarkerArray

from fcclip_ros.conversions import byte_field
from fcclip_ros.msg import SegmentArray

from .harness import (RELIABLE, NodeProcess, Peer, change_state, demo_rgb, diagnostics_values,
                      image_message, node_status, wait_ready, wait_until)

pytestmark = pytest.mark.ros
vision_msgs = pytest.importorskip("vision_msgs.msg",
                                  reason="the real vision_msgs comes from ../shared/ros-tools (not installed)")

NS = "/fcclip_test_spatial"
TIMEOUT = 90.0
FRAME_ID = "camera_color_optical_frame"
RGB = demo_rgb("chelsea.jpg", width=320)  # 320 x 213
H, W = RGB.shape[:2]
FX = 250.0


def camera_info(width: int = W, height: int = H, fx: float = FX) -> CameraInfo:
    info = CameraInfo(width=width, height=height)
    info.header.frame_id = FRAME_ID
    info.k = [fx, 0.0, (width - 1) / 2, 0.0, fx, (height - 1) / 2, 0.0, 0.0, 1.0]
    return info


def depth_message(stamp: tuple[int, int], metres: float, half: bool = True,
                  encoding: str = "16UC1") -> Image:
    """A constant depth plane at ``metres``, at half the colour resolution by default."""
    h, w = (H // 2, W // 2) if half else (H, W)
    if encoding == "16UC1":
        values = np.full((h, w), round(metres * 1000), np.uint16)
    else:
        values = np.full((h, w), metres, np.float32)
        values[0, :] = np.nan  # invalid rows are ignored
    msg = Image(height=h, width=w, encoding=encoding, step=w * values.itemsize)
    msg.header.frame_id = FRAME_ID
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.data = byte_field(values)
    return msg


@pytest.fixture(scope="module")
def peer():
    peer = Peer("test_spatial_peer")
    yield peer
    peer.close()


@pytest.fixture(scope="module")
def node(reference_root, tmp_path_factory):
    process = NodeProcess(reference_root, tmp_path_factory.mktemp("spatial_logs"), NS, params={
        "use_depth": "true", "publish_cloud": "true", "cloud_decimation": "2", "tracker_min_hits": "1",
        "diagnostics_period": "0.2", "depth_tolerance": "0.005", "min_points": "5",
        "overlay_labels": "false"})
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="module")
def io(node, peer):
    class IO:
        image = peer.node.create_publisher(Image, f"{NS}/image", RELIABLE)
        depth = peer.node.create_publisher(Image, f"{NS}/depth", RELIABLE)
        info = peer.node.create_publisher(CameraInfo, f"{NS}/camera_info", RELIABLE)
        segments = peer.collect(SegmentArray, f"{node.fqn}/segments")
        detections = peer.collect(vision_msgs.Detection2DArray, f"{node.fqn}/detections")
        detections_3d = peer.collect(vision_msgs.Detection3DArray, f"{node.fqn}/detections_3d")
        markers = peer.collect(MarkerArray, f"{node.fqn}/markers")
        cloud = peer.collect(PointCloud2, f"{node.fqn}/cloud")
        track_ids = peer.collect(Image, f"{node.fqn}/track_ids")
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")

    wait_ready(node, IO.image)
    wait_until(lambda: IO.depth.get_subscription_count() and IO.info.get_subscription_count(),
               TIMEOUT, "the depth and camera_info subscriptions")
    return IO


def stamp_of(msg) -> tuple[int, int]:
    return int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)


def send_frame(peer: Peer, io, depth_metres: float | None, info: CameraInfo | None = None,
               **depth_kwargs) -> tuple[int, int]:
    """camera_info, depth (unless None), then the colour frame of the same stamp, as a camera
    driver sends them; waits for the frame's segments."""
    stamp = peer.next_stamp()
    info = info or camera_info()
    info.header.stamp.sec, info.header.stamp.nanosec = stamp
    io.info.publish(info)
    if depth_metres is not None:
        io.depth.publish(depth_message(stamp, depth_metres, **depth_kwargs))
        time.sleep(0.2)  # let the depth arrive first
    io.image.publish(image_message(RGB, stamp, FRAME_ID))
    io.segments.for_stamp(stamp, TIMEOUT)
    return stamp


def has_stamp(collector, stamp) -> bool:
    return any(stamp_of(m) == stamp for m in collector.snapshot())


def status(io, node) -> dict[str, str]:
    def find():
        for array in reversed(io.diagnostics.snapshot()):
            found = node_status(array, node)
            if found is not None:
                return found
        return None
    return diagnostics_values(wait_until(find, TIMEOUT, "a diagnostics status"))


def decode_cloud(msg: PointCloud2) -> dict[str, np.ndarray]:
    kinds = {PointField.FLOAT32: "<f4", PointField.UINT32: "<u4"}
    dtype = np.dtype({"names": [f.name for f in msg.fields], "formats": [kinds[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    points = np.frombuffer(bytes(msg.data), dtype=dtype)
    return {n: points[n] for n in dtype.names}


def test_all_3d_outputs_keep_the_header_and_agree(peer, io, node) -> None:
    stamp = send_frame(peer, io, 2.0)
    segments = io.segments.for_stamp(stamp, TIMEOUT)
    det3d = io.detections_3d.for_stamp(stamp, TIMEOUT)
    markers = io.markers.wait_for(lambda m: m.markers and stamp_of(m.markers[0]) == stamp, TIMEOUT, "markers")
    cloud = io.cloud.for_stamp(stamp, TIMEOUT)
    track_image = io.track_ids.for_stamp(stamp, TIMEOUT)
    for msg in (segments, det3d, cloud, track_image, *markers.markers):
        assert msg.header.frame_id == FRAME_ID
    with_3d = [s for s in segments.segments if s.has_3d]
    assert with_3d, "a constant depth plane gives every segment 3D"
    for s in with_3d:
        assert s.centroid_3d.z == pytest.approx(2.0, abs=1e-3)
        assert s.box_3d_min.z == pytest.approx(2.0, abs=1e-3) and s.box_3d_max.z == pytest.approx(2.0, abs=1e-3)
        assert s.median_depth == pytest.approx(2.0, abs=1e-3)
        # the 3D centroid projects into the segment's 2D box
        u = FX * s.centroid_3d.x / s.centroid_3d.z + (W - 1) / 2
        v = FX * s.centroid_3d.y / s.centroid_3d.z + (H - 1) / 2
        assert s.bbox.x_offset - 1 <= u <= s.bbox.x_offset + s.bbox.width
        assert s.bbox.y_offset - 1 <= v <= s.bbox.y_offset + s.bbox.height
        assert s.track_id > 0  # tracker_min_hits 1
    things = {str(s.track_id): s for s in with_3d if s.is_thing}
    assert {d.id for d in det3d.detections} == set(things)
    for d in det3d.detections:
        assert d.results[0].hypothesis.class_id == things[d.id].label
        assert d.bbox.center.position.z == pytest.approx(2.0, abs=1e-3)
    assert markers.markers[0].action == Marker.DELETEALL
    assert len(markers.markers) == 1 + 2 * len(with_3d)
    two_d = io.detections.for_stamp(stamp, TIMEOUT)
    assert {d.id for d in two_d.detections} == {str(s.track_id) for s in segments.segments if s.is_thing}
    fields = decode_cloud(cloud)
    np.testing.assert_allclose(fields["z"], 2.0, atol=1e-3)
    by_id = {s.id: s for s in segments.segments}
    assert all(by_id[int(sid)].track_id == tid for sid, tid in zip(fields["segment_id"], fields["track_id"]))
    assert all(by_id[int(sid)].class_id == c for sid, c in zip(fields["segment_id"], fields["label"]))
    tracks = np.frombuffer(bytes(track_image.data), np.int32).reshape(H, W)
    for s in segments.segments:
        assert set(np.unique(tracks[tracks == s.track_id]).tolist()) == {s.track_id}


def test_track_ids_persist_over_frames(peer, io, node) -> None:
    first = io.segments.for_stamp(send_frame(peer, io, 2.0), TIMEOUT)
    second = io.segments.for_stamp(send_frame(peer, io, 2.0, encoding="32FC1"), TIMEOUT)
    assert [(s.label, s.track_id) for s in first.segments] == [(s.label, s.track_id) for s in second.segments]
    assert all(s.track_id > 0 for s in second.segments)
    assert all(s.centroid_3d.z == pytest.approx(2.0, abs=1e-3) for s in second.segments if s.has_3d)


def test_depth_faster_than_colour_pairs_the_right_frame_without_backlog(peer, io, node) -> None:
    base = peer.next_stamp()
    io.info.publish(camera_info())
    stamps = []
    for k in range(30):  # a burst of depth frames 10 ms apart (> tolerance), each at its distance
        stamp = (base[0], base[1] + k * 10_000_000)
        stamps.append(stamp)
        io.depth.publish(depth_message(stamp, 1.0 + 0.1 * k))
    time.sleep(0.5)
    # the colour frame of the newest depth frame pairs with exactly that one (3.9 m); the older
    # ones were dropped (DDS history and the node's ring are bounded), never queued
    target = stamps[-1]
    io.image.publish(image_message(RGB, target, FRAME_ID))
    segments = io.segments.for_stamp(target, TIMEOUT)
    zs = [s.median_depth for s in segments.segments if s.has_3d]
    assert zs and all(z == pytest.approx(3.9, abs=1e-3) for z in zs), status(io, node)
    # a colour frame long before every depth frame sent (beyond the tolerance) stays 2D
    before = (base[0] - 500, base[1])
    io.image.publish(image_message(RGB, before, FRAME_ID))
    assert not any(s.has_3d for s in io.segments.for_stamp(before, TIMEOUT).segments)


def test_depth_slower_than_colour_gives_2d_frames_counted_in_diagnostics(peer, io, node) -> None:
    before = int(status(io, node)["frames_without_depth"])
    with_depth, without = [], []
    for k in range(4):
        stamp = send_frame(peer, io, 1.5 if k % 2 == 0 else None)
        (with_depth if k % 2 == 0 else without).append(stamp)
    for stamp in with_depth:
        assert any(s.has_3d for s in io.segments.for_stamp(stamp, TIMEOUT).segments)
        io.detections_3d.for_stamp(stamp, TIMEOUT)
    wait_until(lambda: int(status(io, node)["frames_without_depth"]) >= before + 2, TIMEOUT,
               "two frames counted without depth")
    for stamp in without:
        segments = io.segments.for_stamp(stamp, TIMEOUT)
        assert segments.segments and not any(s.has_3d for s in segments.segments)
        assert all(s.track_id > 0 for s in segments.segments)  # tracking goes on in 2D
        assert not has_stamp(io.detections_3d, stamp) and not has_stamp(io.cloud, stamp)
    values = status(io, node)
    assert values["use_depth"] == "True" and values["depth_topic"] == f"{NS}/depth"
    assert "no depth within" in values["last_depth_problem"]


def test_invalid_camera_info_gives_a_warning_and_2d_only(peer, io, node) -> None:
    before = int(status(io, node)["frames_bad_depth_or_camera_info"])
    stamp = send_frame(peer, io, 2.0, info=camera_info(fx=0.0))
    assert not any(s.has_3d for s in io.segments.for_stamp(stamp, TIMEOUT).segments)
    wait_until(lambda: int(status(io, node)["frames_bad_depth_or_camera_info"]) > before, TIMEOUT,
               "the bad camera_info counted")
    assert "focal lengths must be positive" in status(io, node)["last_depth_problem"]
    stamp = send_frame(peer, io, 2.0, info=camera_info(width=W, height=W))  # not this camera
    assert not any(s.has_3d for s in io.segments.for_stamp(stamp, TIMEOUT).segments)
    wait_until(lambda: "not the same camera" in status(io, node)["last_depth_problem"], TIMEOUT,
               "the wrong-size camera_info reported")
    assert "2D only" in node.output
    # a calibration at twice the resolution is scaled to the image
    stamp = send_frame(peer, io, 2.0, info=camera_info(width=2 * W, height=2 * H, fx=2 * FX))
    assert any(s.has_3d for s in io.segments.for_stamp(stamp, TIMEOUT).segments)


def test_deactivate_stops_taking_depth_and_activate_resumes(peer, io, node) -> None:
    assert change_state(peer, node, "deactivate")
    wait_until(lambda: io.depth.get_subscription_count() == 0 and io.info.get_subscription_count() == 0,
               TIMEOUT, "depth and camera_info unsubscribed while inactive")
    assert status(io, node)["depth_topic"] in ("(inactive)", f"{NS}/depth")
    assert change_state(peer, node, "activate")
    wait_until(lambda: io.depth.get_subscription_count() and io.info.get_subscription_count(), TIMEOUT,
               "depth and camera_info subscribed again")
    stamp = send_frame(peer, io, 2.5)
    segments = io.segments.for_stamp(stamp, TIMEOUT)
    assert any(s.has_3d and abs(s.median_depth - 2.5) < 1e-3 for s in segments.segments)
    assert all(s.track_id > 0 for s in segments.segments)  # tracker_min_hits 1
    io.markers.wait_for(lambda m: m.markers and stamp_of(m.markers[0]) == stamp, TIMEOUT, "markers after activate")
