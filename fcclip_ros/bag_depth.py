"""Depth and camera_info of a recording, paired with its colour frames as the node pairs them.

A recording hands messages over in log-time order, and a frame's depth may be logged just
after the frame. So a colour frame waits here until ``lookahead`` further depth messages have
arrived (or the recording has moved ``wait_ns`` of log time past it, or the chunk ends); it is
then paired with the depth of the nearest header stamp, within the tolerance, in a ring of the
last ``depth_buffer`` depth messages (the node's ``StampRing``), and with the latest camera_info
logged before it (or, when there is none yet, the first one after it).
Deterministic for a given recording, and memory stays bounded: at most ``depth_buffer`` depth
images and the frames of ``wait_ns`` of log time are held.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image

from fcclip_core.jobs.units import BagDepthOptions
from fcclip_ros.depth_pairing import StampRing, stamp_ns
from fcclip_ros.node_config import ConfigError, parse_config
from fcclip_ros.spatial_config import SpatialConfig

WAIT_NS = 1_000_000_000  # log time a frame waits at most for later depth (also the chunk read margin)


def bag_spatial_config(depth: BagDepthOptions) -> SpatialConfig:
    """The node's SpatialConfig for ``use_depth`` with the given settings (None: node default).

    Raises ValueError naming every bad value, with the node's own validation.
    """
    values: dict[str, Any] = {"use_depth": True, "publish_cloud": depth.publish_cloud}
    for name in ("depth_scale", "depth_tolerance", "max_depth", "min_points", "cloud_decimation"):
        if getattr(depth, name) is not None:
            values[name] = getattr(depth, name)
    try:
        return parse_config(values).spatial
    except ConfigError as exc:
        raise ValueError(str(exc).replace("invalid parameters", "invalid depth options")) from None


@dataclass
class PendingFrame:
    """A decoded colour frame waiting for its depth; ``payload`` is the caller's."""

    stamp_ns: int
    log_time: int
    payload: Any
    camera_info: Optional[CameraInfo]  # the latest when it arrived
    depth_after: int = 0  # depth messages received since it arrived


@dataclass
class PairedFrame:
    payload: Any
    depth: Optional[Image]  # None: no depth within the tolerance
    camera_info: Optional[CameraInfo]  # None: none received yet


class RecordedDepth:
    """Pairs colour frames of a recording with its depth and camera_info messages."""

    def __init__(self, config: SpatialConfig) -> None:
        self._ring: StampRing[Image] = StampRing(config.depth_buffer)
        self._tolerance_ns = int(round(config.depth_tolerance * 1e9))
        self._lookahead = max(1, config.depth_buffer // 2)
        self._camera_info: Optional[CameraInfo] = None
        self._pending: deque[PendingFrame] = deque()

    def add_depth(self, data: bytes, log_time: int) -> Iterator[PairedFrame]:
        """Take a depth message (CDR); yields the frames that are now ready."""
        message = deserialize_message(data, Image)
        self._ring.put(stamp_ns(message.header), message)
        for frame in self._pending:
            frame.depth_after += 1
        return self._ready(log_time)

    def add_camera_info(self, data: bytes, log_time: int) -> Iterator[PairedFrame]:
        self._camera_info = deserialize_message(data, CameraInfo)
        return self._ready(log_time)

    def add_frame(self, frame_stamp_ns: int, log_time: int, payload: Any) -> Iterator[PairedFrame]:
        """A colour frame to pair; yields the frames that are now ready (in arrival order)."""
        self._pending.append(PendingFrame(frame_stamp_ns, log_time, payload, self._camera_info))
        return self._ready(log_time)

    def finish(self) -> Iterator[PairedFrame]:
        """The frames still waiting, paired with what arrived (end of the chunk)."""
        while self._pending:
            yield self._pair(self._pending.popleft())

    def _ready(self, now_log_time: int) -> Iterator[PairedFrame]:
        while self._pending and (self._pending[0].depth_after >= self._lookahead
                                 or now_log_time - self._pending[0].log_time > WAIT_NS):
            yield self._pair(self._pending.popleft())

    def _pair(self, frame: PendingFrame) -> PairedFrame:
        found = self._ring.nearest(frame.stamp_ns, self._tolerance_ns)
        # the camera_info of the frame's time; one logged just after it when none came before
        return PairedFrame(frame.payload, found[1] if found else None, frame.camera_info or self._camera_info)
