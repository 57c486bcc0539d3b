"""Segment one time chunk of a ROS 2 MCAP recording into an MCAP part file.

Why here and not in fcclip_core: decoding ``sensor_msgs`` images and encoding our outputs is ROS
message work, and doing it with rclpy's own (de)serialisation and the node's own conversions
(``fcclip_ros.conversions`` through ``fcclip_ros.frame_messages``) is what makes a recording
segmented offline carry exactly the messages the live node publishes. Planning, chunking,
resuming, merging and the Ray fan-out are format-level job control and stay in
``fcclip_core.jobs``, which calls ``segment_chunk`` through its explicit ``MCAP_CHUNK_RUNNER`` hook.

Output layout of a chunk: the chosen input messages copied unchanged (same channel, schema and
times), and for every sampled frame of input topic T its outputs on ``<namespace>T/<output>``
(labels, segment_ids, segments, detections, overlay), logged at the input's log time and
stamped with the input's header. With depth (``BagOutputOptions.depth``) the one image topic's
frames are paired with depth and camera_info as the node pairs them (``bag_depth``) and also get
``detections_3d``, ``markers`` and (publish_cloud) ``cloud`` and the 3D fields of ``segments``,
made by the node's own functions (``spatial_messages``); frames without depth stay 2D (counted). The first chunk starts with ``<namespace>/vocabulary`` (and
``label_info``), logged at the first input message's time, before any labelled frame.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np

from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from fcclip_core.jobs.report import UnitReport
from fcclip_core.jobs.units import McapChunkUnit, ProgressCallback
from fcclip_core.spatial.tracker import SegmentTracker
from fcclip_ros.bag_depth import WAIT_NS, PairedFrame, RecordedDepth, bag_spatial_config
from fcclip_ros.bag_schemas import LATCHED_QOS, OUTPUT_QOS, complete_definition, type_name
from fcclip_ros.conversions import FrameError, compressed_to_rgb, image_to_rgb
from fcclip_ros.frame_messages import VOCABULARY_OUTPUTS, FrameMessageOptions, frame_messages, vocabulary_messages
from fcclip_ros.depth_pairing import stamp_ns
from fcclip_ros.outputs import import_vision_msgs
from fcclip_ros.spatial_config import SpatialConfig
from fcclip_ros.spatial_messages import (UNUSABLE_DEPTH_INPUT, SpatialMessageOptions, frame_geometry,
                                         spatial_messages)

_INPUT_TYPES = {"sensor_msgs/msg/Image": (Image, image_to_rgb),
                "sensor_msgs/msg/CompressedImage": (CompressedImage, compressed_to_rgb)}


class _ChannelWriter:
    """Registers schemas and channels of an MCAP writer on first use."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self._schemas: dict[tuple[str, bytes], int] = {}
        self._channels: dict[str, int] = {}

    def _channel(self, topic: str, schema_name: str, schema_encoding: str, schema_data: bytes,
                 metadata: dict[str, str]) -> int:
        if topic not in self._channels:
            key = (schema_name, schema_data)
            if key not in self._schemas:
                self._schemas[key] = self.writer.register_schema(schema_name, schema_encoding, schema_data)
            self._channels[topic] = self.writer.register_channel(topic, "cdr", self._schemas[key], metadata)
        return self._channels[topic]

    def copy(self, schema: Any, channel: Any, message: Any) -> None:
        """An input message, unchanged."""
        channel_id = self._channel(channel.topic, schema.name, schema.encoding, schema.data, dict(channel.metadata))
        self.writer.add_message(channel_id, log_time=message.log_time, data=message.data,
                                publish_time=message.publish_time, sequence=message.sequence)

    def write(self, topic: str, ros_message: Any, log_time: int, publish_time: int, latched: bool = False) -> None:
        """One of our messages, serialised as rclpy would publish it."""
        name = type_name(type(ros_message))
        metadata = {"offered_qos_profiles": LATCHED_QOS if latched else OUTPUT_QOS}
        channel_id = self._channel(topic, name, "ros2msg", complete_definition(name).encode(), metadata)
        self.writer.add_message(channel_id, log_time=log_time, data=serialize_message(ros_message),
                                publish_time=publish_time)


def message_options(unit: McapChunkUnit) -> FrameMessageOptions:
    wanted = set(unit.options.outputs)
    return FrameMessageOptions(
        labels="labels" in wanted, segment_ids="segment_ids" in wanted, segments="segments" in wanted,
        detections="detections" in wanted, overlay="overlay" in wanted, labels_source=unit.options.labels_source,
        overlay_alpha=unit.options.overlay_alpha, overlay_labels=unit.options.overlay_labels)


def _stamp(nanoseconds: int) -> Time:
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


@dataclass
class _Frame:
    """A decoded colour frame of one image topic, with where its outputs go."""

    topic: str
    image: Any  # the input message (its header stamps every output)
    rgb: np.ndarray
    log_time: int
    publish_time: int


class _ChunkSegmenter:
    """Segments the frames of one chunk and writes their outputs (2D, and 3D when paired)."""

    def __init__(self, predictor: Any, unit: McapChunkUnit, channels: _ChannelWriter, report: UnitReport,
                 spatial: Optional[SpatialConfig]) -> None:
        self.predictor, self.options, self.channels, self.report = predictor, unit.options, channels, report
        self.frame_options = message_options(unit)
        self.spatial = spatial
        wants_vision = self.frame_options.detections or unit.chunk.first or spatial is not None
        self.vision_msgs = import_vision_msgs() if wants_vision else None
        self.spatial_options = SpatialMessageOptions(
            detections_3d=spatial.publish_detections_3d, markers=spatial.publish_markers,
            cloud=spatial.publish_cloud) if spatial else None
        # One tracker per image topic, as the live node keeps one per camera stream; a chunk
        # starts with fresh tracks (chunks may run on different workers).
        self.trackers: dict[str, SegmentTracker] = {}

    def _geometry(self, panoptic: Any, paired: Optional[PairedFrame]) -> tuple[dict[int, Any], Any] | None:
        """(3D, cloud) of a paired frame, or None (counted) when it stays 2D."""
        if paired is None or self.spatial is None:
            return None
        if paired.depth is None:
            self.report.without_3d[f"no depth within {self.spatial.depth_tolerance:g} s of the frame"] += 1
            return None
        if paired.camera_info is None:
            self.report.without_3d["no camera_info before the frame in its chunk"] += 1
            return None
        decimation = self.spatial.cloud_decimation if self.spatial.publish_cloud else 0
        try:
            spatial = frame_geometry(panoptic, paired.depth, paired.camera_info, self.spatial.geometry, decimation)
        except UNUSABLE_DEPTH_INPUT as exc:
            self.report.without_3d[f"unusable depth or camera_info: {str(exc).split(';')[0]}"] += 1
            return None
        self.report.frames_with_3d += 1
        return spatial

    def segment(self, frame: _Frame, paired: Optional[PairedFrame] = None) -> None:
        """Predict one frame and write its outputs (``paired``: its depth, with --depth-topic)."""
        started = time.perf_counter()
        result = self.predictor.predict(frame.rgb, tasks=self.frame_options.tasks)
        self.report.add_result(result, time.perf_counter() - started)
        header = frame.image.header
        spatial = self._geometry(result.panoptic, paired)
        geometry, cloud = spatial if spatial is not None else ({}, None)
        tracks = None
        if self.options.track:
            tracker = self.trackers.setdefault(
                frame.topic, SegmentTracker(self.spatial.tracker) if self.spatial else SegmentTracker())
            stamp = stamp_ns(header) / 1e9  # seconds, as the node gives its tracker
            positions = {sid: g.centroid for sid, g in geometry.items()}
            tracks = tracker.update_result(result, stamp=stamp, positions_3d=positions or None).track_of_segment
        messages = frame_messages(result, frame.rgb, header, self.frame_options, self.vision_msgs, tracks=tracks,
                                  geometry=geometry or None)
        if spatial is not None and self.spatial_options is not None:
            messages.update(spatial_messages(result.panoptic, geometry, cloud, tracks, header,
                                             self.spatial_options, self.vision_msgs))
        for name, output in messages.items():
            self.channels.write(self.options.topic(frame.topic, name), output, frame.log_time, frame.publish_time)


def segment_chunk(predictor: Any, unit: McapChunkUnit, progress: ProgressCallback) -> UnitReport:
    """Write ``unit.part_path`` (atomically) from the chunk's messages; returns what was done."""
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer

    chunk, options = unit.chunk, unit.options
    depth_options = options.depth
    spatial = bag_spatial_config(depth_options) if depth_options is not None else None
    depth_topic, info_topic = depth_options.topics if depth_options is not None else ("", "")
    # Depth and camera_info are also read a little before and after the chunk, for its first
    # and last frames; only messages inside the chunk are copied or segmented.
    margin = WAIT_NS if spatial is not None else 0
    read_topics = list(chunk.topics) + ([depth_topic, info_topic] if spatial is not None else [])
    counters = dict(chunk.first_index)
    report = UnitReport()
    temporary = unit.part_path.with_name(f".{unit.part_path.name}.tmp")
    with chunk.source.open("rb") as source, temporary.open("wb") as target:
        writer = Writer(target, compression=CompressionType.ZSTD)
        writer.start(profile="ros2", library="fcclip_ros")
        channels = _ChannelWriter(writer)
        segmenter = _ChunkSegmenter(predictor, unit, channels, report, spatial)
        pairing = RecordedDepth(spatial) if spatial is not None else None
        vocabulary_pending = chunk.first

        def segment_ready(ready: Iterable[PairedFrame]) -> None:
            for paired in ready:
                segmenter.segment(paired.payload, paired)
                progress(1)

        for schema, channel, message in make_reader(source).iter_messages(
                topics=read_topics, starting_at=max(0, chunk.start_ns - margin), ending_before=chunk.end_ns + margin):
            inside = chunk.start_ns <= message.log_time < chunk.end_ns
            if vocabulary_pending and inside:
                header = Header(stamp=_stamp(message.log_time))
                latched = vocabulary_messages(predictor.vocabulary, predictor.vocabulary_version, header,
                                              segmenter.vision_msgs)
                for name in VOCABULARY_OUTPUTS:
                    if name in latched:
                        channels.write(options.vocabulary_topic(name), latched[name], message.log_time,
                                       message.log_time, latched=True)
                vocabulary_pending = False
            if inside and options.copy_inputs:
                channels.copy(schema, channel, message)
            if pairing is not None and channel.topic in (depth_topic, info_topic):
                add = pairing.add_depth if channel.topic == depth_topic else pairing.add_camera_info
                try:
                    ready = add(message.data, message.log_time)  # deserialises now, yields lazily
                except Exception as exc:  # rclpy reports malformed CDR with several exception types
                    report.skipped[f"{channel.topic}: malformed message ({type(exc).__name__})"] += 1
                    continue
                segment_ready(ready)
                continue
            if not inside:
                continue
            index = counters[channel.topic]
            counters[channel.topic] += 1
            if index % unit.every:
                continue
            message_type, decode = _INPUT_TYPES[schema.name]
            try:
                image = deserialize_message(message.data, message_type)
            except Exception as exc:  # rclpy reports malformed CDR with several exception types
                report.skipped[f"{channel.topic}: malformed message ({type(exc).__name__})"] += 1
                progress(1)
                continue
            try:
                rgb = decode(image)
            except FrameError as exc:
                report.skipped[f"{channel.topic}: {str(exc).split(';')[0]}"] += 1
                progress(1)
                continue
            frame = _Frame(channel.topic, image, rgb, message.log_time, message.publish_time)
            if pairing is None:
                segmenter.segment(frame)
                progress(1)
            else:
                segment_ready(pairing.add_frame(stamp_ns(image.header), message.log_time, frame))
        if pairing is not None:
            segment_ready(pairing.finish())
        writer.finish()
        target.flush()
        os.fsync(target.fileno())
    temporary.replace(unit.part_path)
    return report
