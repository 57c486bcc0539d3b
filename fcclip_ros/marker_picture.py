"""Draw the node's 3D outputs (a MarkerArray and a labelled PointCloud2) as a picture, with
OpenCV, from a virtual camera looking at the scene from above and to the side. Used for the
README's picture of the markers of a synthetic scene; also handy to look at recorded outputs
without RViz.

    python -m fcclip_ros.marker_picture -o docs/markers_synthetic.png
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from fcclip_core.spatial.intrinsics import PinholeIntrinsics
from fcclip_core.spatial.segments_3d import panoptic_in_3d
from fcclip_core.spatial.synthetic import Cuboid, Plate, Scene, panoptic_result, render
from fcclip_core.spatial.tracker import SegmentTracker
from fcclip_core.visualize import overlay
from fcclip_ros import spatial_conversions as sconv

_BOX_EDGES = ((0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4), (0, 4), (1, 5), (2, 6), (3, 7))


class ViewCamera:
    """A pinhole camera at ``eye`` looking at ``target`` (optical-frame coordinates)."""

    def __init__(self, eye: Sequence[float], target: Sequence[float], width: int, height: int,
                 focal: float) -> None:
        eye_v, target_v = np.asarray(eye, float), np.asarray(target, float)
        forward = target_v - eye_v
        forward /= np.linalg.norm(forward)
        down = np.array([0.0, 1.0, 0.0])  # the scene's "down" (optical y) stays down
        right = np.cross(down, forward)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        self.rotation = np.stack([right, down, forward])  # rows: view axes in scene coordinates
        self.eye, self.width, self.height, self.focal = eye_v, width, height, focal

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates [N, 2] and depth [N] of scene points [N, 3]."""
        view = (np.asarray(points, float) - self.eye) @ self.rotation.T
        z = view[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = self.focal * view[:, :2] / z[:, None] + [self.width / 2, self.height / 2]
        return uv, z


def _cloud_points(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray]:
    dtype = np.dtype({"names": ["x", "y", "z", "label"], "formats": ["<f4"] * 3 + ["<u4"],
                      "offsets": [f.offset for f in msg.fields if f.name in ("x", "y", "z", "label")],
                      "itemsize": msg.point_step})
    points = np.frombuffer(bytes(msg.data), dtype=dtype)
    return np.stack([points["x"], points["y"], points["z"]], axis=1), points["label"]


def draw_outputs(markers: MarkerArray, cloud: PointCloud2 | None, view: ViewCamera,
                 class_colours: dict[int, tuple[int, int, int]]) -> np.ndarray:
    """An RGB picture of the cloud (points in their class colour) and the markers (box edges,
    label text) as seen by ``view``."""
    picture = np.full((view.height, view.width, 3), 32, np.uint8)
    if cloud is not None:
        xyz, labels = _cloud_points(cloud)
        uv, z = view.project(xyz)
        order = np.argsort(-z)  # far first
        for i in order:
            if z[i] > 0:
                colour = class_colours.get(int(labels[i]), (200, 200, 200))
                cv2.circle(picture, (int(uv[i, 0]), int(uv[i, 1])), 1, tuple(int(c * 0.6) for c in colour), -1)
    for m in markers.markers:
        if m.type != Marker.CUBE:
            continue
        c = np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z])
        half = np.array([m.scale.x, m.scale.y, m.scale.z]) / 2
        corners = np.array([c + half * [sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        uv, z = view.project(corners)
        if (z <= 0).any():
            continue
        colour = tuple(int(255 * v) for v in (m.color.r, m.color.g, m.color.b))
        for a, b in _BOX_EDGES:
            cv2.line(picture, tuple(int(v) for v in uv[a]), tuple(int(v) for v in uv[b]), colour, 2, cv2.LINE_AA)
    for m in markers.markers:
        if m.type != Marker.TEXT_VIEW_FACING:
            continue
        uv, z = view.project(np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]]))
        if z[0] > 0:
            colour = tuple(int(255 * v) for v in (m.color.r, m.color.g, m.color.b))
            org = (int(uv[0, 0]) - 4 * len(m.text), int(uv[0, 1]))
            cv2.putText(picture, m.text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(picture, m.text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return picture


LABELS = ["wall", "floor", "chair", "table", "person", "box"]
SCENE = Scene(wall_z=4.5, floor_y=1.2, plates=(
    Cuboid(-1.4, -0.9, 0.4, 1.2, 2.4, 2.9),  # chair
    Cuboid(-0.5, 0.6, 0.45, 1.2, 2.6, 3.4),  # table
    Cuboid(0.9, 1.3, -0.5, 1.2, 2.0, 2.3),  # person
    Cuboid(-0.2, 0.2, 0.85, 1.2, 1.6, 1.95),  # box
    Plate(-2.0, -1.6, -0.6, 0.3, 4.49),  # a picture on the wall, another "box"
))
SEGMENTS = [(1, 0, False), (2, 1, False), (3, 2, True), (4, 3, True), (5, 4, True), (6, 5, True), (7, 5, True)]


def synthetic_picture() -> np.ndarray:
    """The README picture: the colour camera's segments (left) and the node's markers and
    cloud for them from an oblique viewpoint (right), all through the node's real code path."""
    k = PinholeIntrinsics(fx=320.0, fy=320.0, cx=319.5, cy=239.5, width=640, height=480)
    ids, depth = render(SCENE, k)
    panoptic = panoptic_result(ids, SEGMENTS, LABELS)
    classes = np.array([0] + [c for _, c, _ in SEGMENTS])
    millimetres = np.round(depth * 1000).astype(np.uint16)[::2, ::2]  # half-resolution 16UC1
    geometry, cloud = panoptic_in_3d(ids, classes, millimetres, k, cloud_decimation=3)
    tracker = SegmentTracker()
    for stamp in (0.0, 0.1):  # two frames: the ids are confirmed
        tracks = tracker.update(panoptic, stamp=stamp).track_of_segment
    header = Header(frame_id="camera_optical")
    markers = sconv.marker_array(panoptic, geometry.segments(), tracks, header)
    cloud_msg = sconv.cloud_message(cloud, tracks, header)
    from fcclip_core.visualize import class_color

    colours = {c: class_color(c) for c in range(len(LABELS))}
    view = ViewCamera(eye=(-3.2, -2.6, -0.6), target=(0.0, 0.6, 2.8), width=640, height=480, focal=420.0)
    right = draw_outputs(markers, cloud_msg, view, colours)
    shade = np.clip(200 - (depth - depth.min()) * 40, 40, 220).astype(np.uint8)
    left = overlay(np.repeat(shade[:, :, None], 3, axis=2), panoptic, alpha=0.55)
    for picture, text in ((left, "colour camera: segments"), (right, "~/markers + ~/cloud (RViz-like view)")):
        cv2.putText(picture, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([left, right], axis=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    args = parser.parse_args(argv)
    cv2.imwrite(str(args.output), cv2.cvtColor(synthetic_picture(), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
