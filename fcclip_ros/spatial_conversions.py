"""Between ROS messages and the core's spatial types: depth and camera_info in; 3D detections,
RViz markers, labelled point clouds and track-id images out.

Every output function is pure (inputs -> message), so a recorder can turn stored results into
the same messages the node publishes. Inputs that cannot be used raise ``FrameError`` (depth)
or ``IntrinsicsError`` (camera_info) with a message that says why.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from fcclip_core.spatial.intrinsics import IntrinsicsError, PinholeIntrinsics
from fcclip_core.spatial.segments_3d import LabelledCloud, Segment3D
from fcclip_core.visualize import class_color
from fcclip_ros.conversions import (FrameError, FrameLimits, _check_size, _rows, array_to_image,
                                    byte_field, detection_id)

DEPTH_ENCODINGS = {"16UC1": "u2", "mono16": "u2", "32FC1": "f4"}
MIN_BOX_SIDE = 0.01  # metres: RViz does not draw a zero-thickness cube (a flat segment)
TEXT_HEIGHT = 0.08  # metres, label markers

# x, y, z float32 then the label (class id), the segment id and the track id as uint32
CLOUD_FIELDS = (("x", PointField.FLOAT32), ("y", PointField.FLOAT32), ("z", PointField.FLOAT32),
                ("label", PointField.UINT32), ("segment_id", PointField.UINT32),
                ("track_id", PointField.UINT32))
_CLOUD_DTYPE = np.dtype([(name, "<f4" if kind == PointField.FLOAT32 else "<u4")
                         for name, kind in CLOUD_FIELDS])


def depth_to_array(msg: Image, limits: FrameLimits = FrameLimits()) -> np.ndarray:
    """A depth ``sensor_msgs/Image`` as [H, W] uint16 (16UC1, mono16: millimetres by
    convention) or float32 (32FC1: metres)."""
    dtype = DEPTH_ENCODINGS.get(msg.encoding)
    if dtype is None:
        raise FrameError(f"unsupported depth encoding {msg.encoding or '(empty)'!r}; "
                         f"supported: {', '.join(DEPTH_ENCODINGS)}")
    _check_size(msg.height, msg.width, limits)
    rows = np.ascontiguousarray(_rows(msg, 2 if dtype == "u2" else 4))
    values = rows.view((">" if msg.is_bigendian else "<") + dtype)
    return values.reshape(msg.height, msg.width).astype(values.dtype.newbyteorder("="), copy=False)


def camera_info_intrinsics(msg: CameraInfo) -> PinholeIntrinsics:
    """The pinhole intrinsics (K) of a ``sensor_msgs/CameraInfo``; ``IntrinsicsError`` when
    unusable (zero focal length, zero size, a K of the wrong length). Distortion is ignored:
    depth registered to a rectified image is expected."""
    return PinholeIntrinsics.from_k(list(msg.k), int(msg.width), int(msg.height))


def track_ids_image(track_ids: np.ndarray, header: Header) -> Image:
    """The track-id image (each segment's pixels carry its track id; 0 = none) as 32SC1, the
    encoding of ``~/segment_ids``."""
    if track_ids.size and int(track_ids.max()) > np.iinfo(np.int32).max:
        raise ValueError("track ids do not fit a 32SC1 image")
    return array_to_image(track_ids.astype(np.int32, copy=False), "32SC1", header)


def detection3d_array(panoptic: Any, geometry: Mapping[int, Segment3D],
                      tracks: Mapping[int, int], header: Header, vision_msgs: Any) -> Any:
    """A ``vision_msgs/Detection3DArray``: one detection per thing segment with 3D.

    ``id`` is the track id ("" while not confirmed), the hypothesis' class_id the label and its
    score the class probability (as in ``~/detections``); the box is the robust 3D box and the
    hypothesis pose the centroid. ``vision_msgs`` is the module ``vision_msgs.msg``.
    """
    out = vision_msgs.Detection3DArray(header=header)
    for s in panoptic.segments:
        g = geometry.get(s.id)
        if not s.isthing or g is None:
            continue
        detection = vision_msgs.Detection3D(header=header, id=detection_id(s.id, tracks))
        hypothesis = vision_msgs.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = str(s.label)
        hypothesis.hypothesis.score = float(s.score)
        position = hypothesis.pose.pose.position
        position.x, position.y, position.z = g.centroid
        detection.results = [hypothesis]
        center = detection.bbox.center
        center.position.x, center.position.y, center.position.z = g.box_center
        center.orientation.w = 1.0
        detection.bbox.size.x, detection.bbox.size.y, detection.bbox.size.z = g.box_size
        out.detections.append(detection)
    return out


def _colour(class_id: int, alpha: float) -> ColorRGBA:
    r, g, b = class_color(class_id)
    return ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=alpha)


def marker_array(panoptic: Any, geometry: Mapping[int, Segment3D], tracks: Mapping[int, int],
                 header: Header, alpha: float = 0.4) -> MarkerArray:
    """RViz markers of one frame: a DELETEALL first (so segments that are gone disappear), then
    per segment with 3D a translucent box in its class colour (namespace "boxes") and a text
    label "label #track" above it (namespace "labels"). Marker ids are the segment ids."""
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    for s in panoptic.segments:
        g = geometry.get(s.id)
        if g is None:
            continue
        cx, cy, cz = g.box_center
        box = Marker(header=header, ns="boxes", id=int(s.id), type=Marker.CUBE, action=Marker.ADD,
                     color=_colour(s.category_id, alpha), lifetime=Duration())
        box.pose.position.x, box.pose.position.y, box.pose.position.z = cx, cy, cz
        box.pose.orientation.w = 1.0
        sx, sy, sz = (max(MIN_BOX_SIDE, v) for v in g.box_size)
        box.scale.x, box.scale.y, box.scale.z = sx, sy, sz
        track = tracks.get(s.id, 0)
        text = Marker(header=header, ns="labels", id=int(s.id), type=Marker.TEXT_VIEW_FACING,
                      action=Marker.ADD, color=_colour(s.category_id, 1.0), lifetime=Duration(),
                      text=f"{s.label} #{track}" if track else str(s.label))
        # above the box: y points down in the optical frame
        text.pose.position = Point(x=cx, y=g.box_min[1] - TEXT_HEIGHT, z=cz)
        text.pose.orientation.w = 1.0
        text.scale.z = TEXT_HEIGHT
        out.markers.extend([box, text])
    return out


def cloud_message(cloud: LabelledCloud, track_of_segment: Mapping[int, int],
                  header: Header) -> PointCloud2:
    """The labelled points as an unorganised ``sensor_msgs/PointCloud2`` with fields x, y, z
    (float32, metres), label (class id), segment_id (as in ``~/segment_ids``) and track_id
    (uint32), little-endian."""
    n = len(cloud.points)
    points = np.empty(n, dtype=_CLOUD_DTYPE)
    points["x"], points["y"], points["z"] = cloud.points.T
    points["label"] = cloud.class_ids
    points["segment_id"] = cloud.segment_ids
    top = int(cloud.segment_ids.max(initial=0))
    lut = np.zeros(top + 1, dtype=np.uint32)
    for sid, tid in track_of_segment.items():
        if 0 <= sid <= top:
            lut[sid] = tid
    points["track_id"] = lut[cloud.segment_ids]
    msg = PointCloud2(header=header, height=1, width=n, is_bigendian=False,
                      point_step=_CLOUD_DTYPE.itemsize, row_step=_CLOUD_DTYPE.itemsize * n,
                      is_dense=True)
    msg.fields = [PointField(name=name, offset=_CLOUD_DTYPE.fields[name][1], datatype=kind, count=1)
                  for name, kind in CLOUD_FIELDS]
    msg.data = byte_field(points)
    return msg


__all__ = ["DEPTH_ENCODINGS", "CLOUD_FIELDS", "IntrinsicsError", "depth_to_array",
           "camera_info_intrinsics", "track_ids_image", "detection3d_array", "marker_array",
           "cloud_message"]
