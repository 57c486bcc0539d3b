"""The node's depth inputs and its 3D and tracking outputs, in one object the node owns.

With ``use_depth`` it subscribes ``depth`` and ``camera_info`` (QoS as the image) while the node
is active and keeps the last few depth messages, unconverted, in a ``StampRing``. When a colour frame arrives the node
calls ``expect``; the depth of that stamp is then held aside even if the ring moves on while
the frame waits for the model. After inference ``process`` pairs, computes every segment's 3D
and the track ids (both in ``fcclip_core``), and publishes ``~/detections_3d``, ``~/markers``,
``~/cloud`` and ``~/track_ids``. A frame without a matching depth, or with an unusable depth or
camera_info, is published in 2D only and counted in diagnostics.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from fcclip_core.spatial.segments_3d import Segment3D
from fcclip_core.spatial.tracker import SegmentTracker
from fcclip_ros import spatial_conversions as sconv
from fcclip_ros.depth_pairing import StampRing, stamp_ns
from fcclip_ros.spatial_config import SpatialConfig
from fcclip_ros.spatial_messages import (UNUSABLE_DEPTH_INPUT, SpatialMessageOptions, frame_geometry,
                                         spatial_messages)

LOG_THROTTLE_S = 5.0


@dataclass
class SpatialFrame:
    """What one frame adds to the 2D outputs."""

    tracks: dict[int, int] | None = None  # segment id -> track id; None when tracking is off
    geometry: dict[int, Segment3D] = field(default_factory=dict)  # segment id -> 3D


@dataclass
class SpatialCounts:
    frames_with_3d: int = 0
    frames_without_depth: int = 0  # no depth within the tolerance
    frames_bad_input: int = 0  # unusable depth or camera_info
    last_problem: str = ""


class SpatialOutputs:
    """Depth pairing, 3D, tracking and their publishers for one lifecycle node.

    Made in configure (lifecycle publishers, enabled on activate); ``subscribe`` on activate,
    ``unsubscribe`` on deactivate, ``destroy`` on cleanup.
    """

    def __init__(self, node: Any, config: SpatialConfig, output_qos: QoSProfile,
                 vision_msgs: Any | None) -> None:
        """``node``: a lifecycle node (its ``create_lifecycle_publisher`` makes the publishers)."""
        self._node = node
        self._config = config
        self._vision_msgs = vision_msgs
        self._lock = threading.Lock()
        self.counts = SpatialCounts()
        self.tracker = SegmentTracker(config.tracker) if config.tracking else None
        publish = node.create_lifecycle_publisher
        self.track_ids = (publish(Image, "~/track_ids", output_qos)
                          if config.tracking and config.publish_track_ids else None)
        self.detections_3d = self.markers = self.cloud = None
        if config.use_depth:
            if vision_msgs is not None and config.publish_detections_3d:
                self.detections_3d = publish(vision_msgs.Detection3DArray, "~/detections_3d", output_qos)
            if config.publish_markers:
                self.markers = publish(MarkerArray, "~/markers", output_qos)
            if config.publish_cloud:
                self.cloud = publish(PointCloud2, "~/cloud", output_qos)
        self._message_options = SpatialMessageOptions(detections_3d=self.detections_3d is not None,
                                                      markers=self.markers is not None,
                                                      cloud=self.cloud is not None)
        self._ring: StampRing[Image] = StampRing(config.depth_buffer)
        self._held: dict[int, Image] = {}  # depth held for the frames expected: stamp -> message
        self._camera_info: CameraInfo | None = None
        self._tolerance_ns = int(round(config.depth_tolerance * 1e9))
        self._subscriptions: list[Any] = []
        self._topics = ("", "")

    def subscribe(self, input_qos: QoSProfile) -> None:
        """Start taking depth and camera_info (activate); tracks start afresh."""
        if self.tracker is not None:
            self.tracker.reset()
        if not self._config.use_depth or self._subscriptions:
            return
        depth = self._node.create_subscription(Image, "depth", self._on_depth, input_qos)
        info = self._node.create_subscription(CameraInfo, "camera_info", self._on_camera_info, input_qos)
        self._subscriptions = [depth, info]
        self._topics = (depth.topic_name, info.topic_name)

    def unsubscribe(self) -> None:
        """Stop taking depth and camera_info (deactivate) and forget what was received."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions = []
        self._ring.clear()
        with self._lock:
            self._held.clear()
            self._camera_info = None

    def destroy(self) -> None:
        """Remove the subscriptions and publishers from the node (cleanup)."""
        self.unsubscribe()
        for publisher in (self.track_ids, self.detections_3d, self.markers, self.cloud):
            if publisher is not None:
                self._node.destroy_lifecycle_publisher(publisher)

    # ------------------------------------------------------------------ inputs

    def _on_depth(self, msg: Image) -> None:
        stamp = stamp_ns(msg.header)
        self._ring.put(stamp, msg)
        with self._lock:
            for wanted, held in self._held.items():
                if abs(stamp - wanted) <= self._tolerance_ns and (
                        held is None or abs(stamp - wanted) < abs(stamp_ns(held.header) - wanted)):
                    self._held[wanted] = msg

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._camera_info = msg

    def expect(self, header: Header) -> None:
        """A colour frame with this header arrived: hold its depth aside (the last two frames')."""
        if not self._config.use_depth:
            return
        wanted = stamp_ns(header)
        found = self._ring.nearest(wanted, self._tolerance_ns)
        with self._lock:
            self._held[wanted] = found[1] if found else None  # type: ignore[assignment]
            while len(self._held) > 2:
                del self._held[next(iter(self._held))]

    def _paired_depth(self, header: Header) -> Image | None:
        wanted = stamp_ns(header)
        with self._lock:
            held = self._held.get(wanted)
        if held is not None:
            return held
        found = self._ring.nearest(wanted, self._tolerance_ns)
        return found[1] if found else None

    # ------------------------------------------------------------------ per frame

    def _problem(self, text: str, bad_input: bool) -> None:
        with self._lock:
            if bad_input:
                self.counts.frames_bad_input += 1
            else:
                self.counts.frames_without_depth += 1
            self.counts.last_problem = text
        self._node.get_logger().warning(f"2D only: {text}", throttle_duration_sec=LOG_THROTTLE_S)

    def _geometry(self, panoptic: Any, header: Header) -> tuple[dict[int, Segment3D], Any] | None:
        """(segment id -> 3D, labelled cloud or None), or None when the frame stays 2D."""
        depth_msg = self._paired_depth(header)
        with self._lock:
            info = self._camera_info
        if depth_msg is None:
            self._problem(f"no depth within {self._config.depth_tolerance:g} s of the frame", False)
            return None
        if info is None:
            self._problem("no camera_info received yet", True)
            return None
        try:
            spatial = frame_geometry(panoptic, depth_msg, info, self._config.geometry,
                                     self._config.cloud_decimation if self.cloud is not None else 0)
        except UNUSABLE_DEPTH_INPUT as error:
            self._problem(f"unusable depth or camera_info: {error}", True)
            return None
        with self._lock:
            self.counts.frames_with_3d += 1
        return spatial

    def process(self, result: Any, header: Header) -> SpatialFrame:
        """3D and track ids of one frame's result; publishes the spatial outputs."""
        panoptic = result.panoptic
        frame = SpatialFrame()
        spatial = self._geometry(panoptic, header) if self._config.use_depth else None
        cloud = None
        if spatial is not None:
            frame.geometry, cloud = spatial
        if self.tracker is not None:
            positions = {sid: g.centroid for sid, g in frame.geometry.items()}
            stamp = stamp_ns(header) / 1e9
            tracks = self.tracker.update(panoptic, stamp=stamp,
                                         vocabulary_version=result.vocabulary_version,
                                         positions_3d=positions or None)
            if tracks.reset_reason:
                self._node.get_logger().info(f"tracks reset: {tracks.reset_reason}")
            frame.tracks = tracks.track_of_segment
            if self.track_ids is not None:
                self.track_ids.publish(sconv.track_ids_image(tracks.id_image(panoptic.segment_ids),
                                                             header))
        if spatial is not None:  # also with no segment in 3D: the markers must clear
            publishers = {"detections_3d": self.detections_3d, "markers": self.markers, "cloud": self.cloud}
            for name, message in spatial_messages(panoptic, frame.geometry, cloud, frame.tracks, header,
                                                  self._message_options, self._vision_msgs).items():
                publishers[name].publish(message)  # type: ignore[union-attr]
        return frame

    def diagnostics(self) -> dict[str, str]:
        """Key-values for the node's diagnostics status."""
        with self._lock:
            c = self.counts
            values = {"tracking": str(self.tracker is not None), "use_depth": str(self._config.use_depth)}
            if self._config.use_depth:
                values.update(frames_with_3d=str(c.frames_with_3d),
                              frames_without_depth=str(c.frames_without_depth),
                              frames_bad_depth_or_camera_info=str(c.frames_bad_input),
                              depth_topic=self._topics[0] or "(inactive)",
                              camera_info_topic=self._topics[1] or "(inactive)",
                              last_depth_problem=c.last_problem)
        if self.tracker is not None:
            values["live_tracks"] = str(self.tracker.num_tracks)
        return values
