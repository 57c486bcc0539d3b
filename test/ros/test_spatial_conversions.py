"""Depth and camera_info in; 3D detections, markers, labelled clouds, track-id images and the
3D/track fields of SegmentArray out, on a synthetic scene with known geometry."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from fcclip_core.spatial.intrinsics import IntrinsicsError, PinholeIntrinsics
from fcclip_core.spatial.segments_3d import panoptic_in_3d
from fcclip_core.spatial.synthetic import Plate, Scene, panoptic_result, render
from fcclip_ros import conversions as conv
from fcclip_ros import spatial_conversions as sconv
from fcclip_ros.conversions import FrameError

K = PinholeIntrinsics(fx=100.0, fy=100.0, cx=39.5, cy=29.5, width=80, height=60)
SCENE = Scene(wall_z=4.0, floor_y=1.0, plates=(Plate(-0.3, 0.2, -0.1, 0.3, 1.5),))
LABELS = ["wall", "floor", "box"]


def header() -> Header:
    h = Header(frame_id="camera_color_optical_frame")
    h.stamp.sec, h.stamp.nanosec = 7, 8
    return h


def scene_results(cloud_decimation: int = 2):
    ids, depth = render(SCENE, K)
    panoptic = panoptic_result(ids, [(1, 0, False), (2, 1, False), (3, 2, True)], LABELS)
    geometry, cloud = panoptic_in_3d(ids, np.array([0, 0, 1, 2]), depth, K,
                                     cloud_decimation=cloud_decimation)
    return panoptic, geometry.segments(), cloud


def depth_message(values: np.ndarray, encoding: str, big_endian: bool = False, pad: int = 0) -> Image:
    order = ">" if big_endian else "<"
    data = values.astype(values.dtype.newbyteorder(order))
    rows = data.view(np.uint8).reshape(values.shape[0], -1)
    rows = np.pad(rows, ((0, 0), (0, pad)))
    return Image(height=values.shape[0], width=values.shape[1], encoding=encoding,
                 is_bigendian=int(big_endian), step=rows.shape[1], data=rows.tobytes())


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("encoding, dtype", [("16UC1", np.uint16), ("mono16", np.uint16),
                                             ("32FC1", np.float32)])
def test_depth_images_decode_with_any_byte_order_and_row_padding(encoding, dtype, big_endian) -> None:
    values = (np.arange(12).reshape(3, 4) * 250).astype(dtype)
    got = sconv.depth_to_array(depth_message(values, encoding, big_endian, pad=4), )
    assert got.dtype == dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, values)


def test_bad_depth_and_camera_info_raise_clear_errors() -> None:
    with pytest.raises(FrameError, match="unsupported depth encoding 'rgb8'"):
        sconv.depth_to_array(depth_message(np.zeros((2, 2), np.uint16), "rgb8"))
    short = depth_message(np.zeros((2, 2), np.uint16), "16UC1")
    short.data = short.data[:-1]
    with pytest.raises(FrameError, match="expected step x height"):
        sconv.depth_to_array(short)
    good = CameraInfo(width=80, height=60, k=[100.0, 0, 39.5, 0, 100.0, 29.5, 0, 0, 1])
    assert sconv.camera_info_intrinsics(good) == K
    with pytest.raises(IntrinsicsError, match="not calibrated"):
        sconv.camera_info_intrinsics(CameraInfo(width=80, height=60))  # all-zero K
    with pytest.raises(IntrinsicsError, match="focal lengths must be positive"):
        sconv.camera_info_intrinsics(CameraInfo(width=80, height=60, k=[0.0, 0, 39.5, 0, 0, 29.5, 0, 0, 1]))
    with pytest.raises(IntrinsicsError, match="size must be positive"):
        sconv.camera_info_intrinsics(CameraInfo(k=[100.0, 0, 39.5, 0, 100.0, 29.5, 0, 0, 1]))


def test_segment_array_carries_track_ids_and_3d() -> None:
    panoptic, geometry, _ = scene_results()
    msg = conv.segment_array(panoptic, 4, header(), tracks={1: 11, 2: 12, 3: 0}, geometry=geometry)
    by_id = {s.id: s for s in msg.segments}
    assert [by_id[i].track_id for i in (1, 2, 3)] == [11, 12, 0]
    box = by_id[3]
    assert box.has_3d and box.num_points == geometry[3].num_points
    assert (box.centroid_3d.x, box.centroid_3d.y, box.centroid_3d.z) == pytest.approx(geometry[3].centroid)
    assert (box.box_3d_min.x, box.box_3d_min.z) == pytest.approx((geometry[3].box_min[0], 1.5))
    assert box.box_3d_max.y == pytest.approx(geometry[3].box_max[1])
    assert box.median_depth == pytest.approx(1.5, abs=1e-3)
    plain = conv.segment_array(panoptic, 4, header())
    assert all(not s.has_3d and s.track_id == 0 for s in plain.segments)


def test_markers_box_and_label_every_segment_with_3d() -> None:
    panoptic, geometry, _ = scene_results()
    geometry.pop(2)  # the floor without 3D: no markers
    msg = sconv.marker_array(panoptic, geometry, {1: 11, 3: 13}, header())
    assert msg.markers[0].action == Marker.DELETEALL
    boxes = {m.id: m for m in msg.markers if m.ns == "boxes"}
    texts = {m.id: m for m in msg.markers if m.ns == "labels"}
    assert set(boxes) == set(texts) == {1, 3}
    cube = boxes[3]
    assert cube.type == Marker.CUBE and cube.header.frame_id == "camera_color_optical_frame"
    assert (cube.pose.position.x, cube.pose.position.y) == pytest.approx(geometry[3].box_center[:2])
    assert cube.scale.z == pytest.approx(sconv.MIN_BOX_SIDE)  # a flat plate still shows
    assert cube.scale.x == pytest.approx(geometry[3].box_size[0])
    assert texts[3].text == "box #13" and texts[3].type == Marker.TEXT_VIEW_FACING
    assert texts[3].pose.position.y < geometry[3].box_min[1]  # above the box (y is down)
    assert 0 < cube.color.a < 1 and texts[3].color.a == 1.0


def _decode_cloud(msg) -> dict[str, np.ndarray]:
    kinds = {PointField.FLOAT32: "<f4", PointField.UINT32: "<u4"}
    dtype = np.dtype({"names": [f.name for f in msg.fields],
                      "formats": [kinds[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    points = np.frombuffer(bytes(msg.data), dtype=dtype)
    return {name: points[name] for name in dtype.names}


def test_the_cloud_holds_labelled_points_in_the_camera_frame() -> None:
    panoptic, geometry, cloud = scene_results(cloud_decimation=2)
    msg = sconv.cloud_message(cloud, {1: 11, 2: 12, 3: 13}, header())
    assert (msg.height, msg.width) == (1, len(cloud.points)) and msg.width == 40 * 30
    assert msg.row_step == msg.point_step * msg.width and not msg.is_bigendian
    fields = _decode_cloud(msg)
    assert set(fields) == {"x", "y", "z", "label", "segment_id", "track_id"}
    box = fields["segment_id"] == 3
    np.testing.assert_allclose(fields["z"][box], 1.5, atol=1e-6)
    assert (fields["label"][box] == 2).all() and (fields["track_id"][box] == 13).all()
    np.testing.assert_allclose(fields["y"][fields["segment_id"] == 2], 1.0, atol=1e-5)
    np.testing.assert_allclose(np.stack([fields["x"], fields["y"], fields["z"]], 1), cloud.points)


def test_track_id_image() -> None:
    msg = sconv.track_ids_image(np.array([[0, 5], [7, 7]], np.uint32), header())
    assert (msg.encoding, msg.width, msg.height) == ("32SC1", 2, 2)
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.int32).reshape(2, 2), [[0, 5], [7, 7]])


def test_detections_use_track_ids() -> None:
    vision_msgs = pytest.importorskip("vision_msgs.msg", reason="vision_msgs (../shared/ros-tools) not installed")
    panoptic, geometry, _ = scene_results()
    two_d = conv.detection_array(panoptic, header(), vision_msgs, tracks={3: 13})
    assert [d.id for d in two_d.detections] == ["13"]
    assert [d.id for d in conv.detection_array(panoptic, header(), vision_msgs, tracks={})
            .detections] == [""]
    assert [d.id for d in conv.detection_array(panoptic, header(), vision_msgs).detections] == ["3"]
    three_d = sconv.detection3d_array(panoptic, geometry, {3: 13}, header(), vision_msgs)
    assert len(three_d.detections) == 1  # things only
    det = three_d.detections[0]
    assert det.id == "13" and det.header.frame_id == "camera_color_optical_frame"
    assert det.results[0].hypothesis.class_id == "box"
    assert det.results[0].hypothesis.score == pytest.approx(1.0)
    c = det.bbox.center.position
    assert (c.x, c.y, c.z) == pytest.approx(geometry[3].box_center)
    assert (det.bbox.size.x, det.bbox.size.y) == pytest.approx(geometry[3].box_size[:2])
    p = det.results[0].pose.pose.position
    assert (p.x, p.y, p.z) == pytest.approx(geometry[3].centroid)
    del geometry[3]
    assert not sconv.detection3d_array(panoptic, geometry, {3: 13}, header(), vision_msgs).detections
