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
stamped with the input's header. The first chunk starts with ``<namespace>/vocabulary`` (and
``label_info``), logged at the first input message's time, before any labelled frame.
"""
from __future__ import annotations

import os
import time
from typing import Any

from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from fcclip_core.jobs.report import UnitReport
from fcclip_core.jobs.units import McapChunkUnit, ProgressCallback
from fcclip_core.spatial.tracker import SegmentTracker
from fcclip_ros.bag_schemas import LATCHED_QOS, OUTPUT_QOS, complete_definition, type_name
from fcclip_ros.conversions import FrameError, compressed_to_rgb, image_to_rgb
from fcclip_ros.frame_messages import VOCABULARY_OUTPUTS, FrameMessageOptions, frame_messages, vocabulary_messages
from fcclip_ros.outputs import import_vision_msgs

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


def segment_chunk(predictor: Any, unit: McapChunkUnit, progress: ProgressCallback) -> UnitReport:
    """Write ``unit.part_path`` (atomically) from the chunk's messages; returns what was done."""
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer

    chunk, options = unit.chunk, unit.options
    frame_options = message_options(unit)
    vision_msgs = import_vision_msgs() if frame_options.detections or chunk.first else None
    counters = dict(chunk.first_index)
    report = UnitReport()
    temporary = unit.part_path.with_name(f".{unit.part_path.name}.tmp")
    with chunk.source.open("rb") as source, temporary.open("wb") as target:
        writer = Writer(target, compression=CompressionType.ZSTD)
        writer.start(profile="ros2", library="fcclip_ros")
        channels = _ChannelWriter(writer)
        vocabulary_pending = chunk.first
        # One tracker per image topic, as the live node keeps one per camera stream; a chunk
        # starts with fresh tracks (chunks may run on different workers).
        trackers: dict[str, SegmentTracker] = {}
        for schema, channel, message in make_reader(source).iter_messages(
                topics=list(chunk.topics), starting_at=chunk.start_ns, ending_before=chunk.end_ns):
            if vocabulary_pending:
                header = Header(stamp=_stamp(message.log_time))
                latched = vocabulary_messages(predictor.vocabulary, predictor.vocabulary_version, header, vision_msgs)
                for name in VOCABULARY_OUTPUTS:
                    if name in latched:
                        channels.write(options.vocabulary_topic(name), latched[name], message.log_time,
                                       message.log_time, latched=True)
                vocabulary_pending = False
            if options.copy_inputs:
                channels.copy(schema, channel, message)
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
            started = time.perf_counter()
            result = predictor.predict(rgb, tasks=frame_options.tasks)
            report.add_result(result, time.perf_counter() - started)
            tracks = None
            if options.track:
                tracker = trackers.setdefault(channel.topic, SegmentTracker())
                stamp = image.header.stamp.sec + image.header.stamp.nanosec * 1e-9
                tracks = tracker.update_result(result, stamp=stamp).track_of_segment
            messages = frame_messages(result, rgb, image.header, frame_options, vision_msgs, tracks=tracks)
            for name, output in messages.items():
                channels.write(options.topic(channel.topic, name), output, message.log_time, message.publish_time)
            progress(1)
        writer.finish()
        target.flush()
        os.fsync(target.fileno())
    temporary.replace(unit.part_path)
    return report
