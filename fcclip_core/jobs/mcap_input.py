"""ROS 2 MCAP recordings as job input: validation with clear errors, image topics, time chunks.

Only the file format is read here (the ``mcap`` package: records, schemas, channels, log times);
message payloads stay opaque CDR bytes, so this module needs no ROS. Planning reads the log
times of the chosen topics once, so that ``--every N`` counts frames over the whole file however
the file is cut into chunks, and every chunk knows where its frames stand in each topic.
"""
from __future__ import annotations

import struct
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

IMAGE_SCHEMAS: dict[str, str] = {
    "sensor_msgs/msg/Image": "raw",
    "sensor_msgs/msg/CompressedImage": "compressed",
}
DEPTH_SCHEMAS: tuple[str, str] = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo")
MCAP_MAGIC = b"\x89MCAP0\r\n"
ROS1_BAG_MAGIC = b"#ROSBAG V"


class RecordingError(ValueError):
    """A recording that cannot be segmented; the message says why and, where possible, what to do."""


@dataclass(frozen=True)
class TopicInfo:
    topic: str
    schema: str
    messages: int


@dataclass(frozen=True)
class McapChunk:
    """Messages of ``topics`` with log time in [start_ns, end_ns) of one recording.

    ``first_index``: per topic, how many of its messages (counted from the job's start time) come
    before this chunk, so that frame sampling is the same for any chunking. ``frames``: how many of
    them this chunk segments (progress totals). ``first``: the chunk that carries the vocabulary.
    """

    source: Path
    index: int
    start_ns: int
    end_ns: int
    topics: tuple[str, ...]
    first_index: tuple[tuple[str, int], ...]
    messages: int
    frames: int
    first: bool


@dataclass
class RecordingPlan:
    source: Path
    topics: tuple[TopicInfo, ...]
    chunks: list[McapChunk] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.chunks)


def _open_reader(path: Path, stream):
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    try:
        reader = make_reader(stream)
        summary = reader.get_summary()
        header = reader.get_header()
    except (McapError, struct.error, EOFError, ValueError, KeyError) as exc:
        raise RecordingError(f"{path}: truncated or unreadable MCAP ({type(exc).__name__}: {exc}); "
                             "a recording cut off while writing can be repaired with `mcap recover`") from None
    if summary is None:
        raise RecordingError(f"{path}: truncated MCAP (no summary section: the recording was cut off?); "
                             "repair it with `mcap recover` first")
    return reader, summary, header


def check_recording(path: Path) -> tuple[tuple[TopicInfo, ...], dict[str, str]]:
    """(all topics with their schema and message count, {image topic: "raw"|"compressed"}).

    Raises RecordingError for an empty file, a ROS 1 bag, another format, a truncated or
    non-ROS-2 MCAP, or a recording without image topics.
    """
    size = path.stat().st_size
    if size == 0:
        raise RecordingError(f"{path}: empty file")
    with path.open("rb") as stream:
        head = stream.read(16)
        if head.startswith(ROS1_BAG_MAGIC):
            raise RecordingError(f"{path}: a ROS 1 bag, not a ROS 2 MCAP recording; convert it first "
                                 "(e.g. `rosbags-convert --src file.bag --dst out/`, then pass the .mcap)")
        if not head.startswith(MCAP_MAGIC):
            raise RecordingError(f"{path}: not an MCAP file (it does not start with the MCAP magic bytes)")
        stream.seek(0)
        _, summary, header = _open_reader(path, stream)
    schemas = summary.schemas
    counts = summary.statistics.channel_message_counts if summary.statistics else {}
    topics = []
    for channel_id, channel in sorted(summary.channels.items()):
        schema = schemas.get(channel.schema_id)
        topics.append(TopicInfo(channel.topic, schema.name if schema else "", int(counts.get(channel_id, 0))))
    not_cdr = sorted({c.message_encoding for c in summary.channels.values() if c.message_encoding != "cdr"})
    if header.profile != "ros2" or not_cdr:
        found = f"profile {header.profile!r}" + (f", message encodings {not_cdr}" if not_cdr else "")
        raise RecordingError(f"{path}: not a ROS 2 recording ({found}; expected profile 'ros2' with CDR messages)")
    images = {t.topic: IMAGE_SCHEMAS[t.schema] for t in topics if t.schema in IMAGE_SCHEMAS}
    if not images:
        listed = ", ".join(f"{t.topic} ({t.schema})" for t in topics) or "none"
        raise RecordingError(f"{path}: no image topics (sensor_msgs/msg/Image or CompressedImage); topics: {listed}")
    return tuple(topics), images


def choose_topics(path: Path, images: dict[str, str], requested: Sequence[str]) -> tuple[str, ...]:
    """The requested image topics (all image topics when none are requested)."""
    if not requested:
        return tuple(sorted(images))
    wrong = [t for t in requested if t not in images]
    if wrong:
        raise RecordingError(f"{path}: not image topics of this recording: {', '.join(wrong)}; "
                             f"image topics: {', '.join(sorted(images))}")
    return tuple(dict.fromkeys(requested))


def check_depth_topics(path: Path, topics: Sequence[TopicInfo], images: dict[str, str],
                       depth_topics: tuple[str, str]) -> dict[str, str]:
    """The image topics left to segment once (depth, camera_info) are checked and set apart.

    Raises RecordingError when a topic is missing or of the wrong type.
    """
    schema_of = {t.topic: t.schema for t in topics}
    for topic, wanted in zip(depth_topics, DEPTH_SCHEMAS):
        if topic not in schema_of:
            raise RecordingError(f"{path}: no topic {topic} in this recording; topics: "
                                 + ", ".join(f"{t.topic} ({t.schema})" for t in topics))
        if schema_of[topic] != wanted:
            raise RecordingError(f"{path}: {topic} is {schema_of[topic] or 'of unknown type'}, expected {wanted}")
    return {t: kind for t, kind in images.items() if t != depth_topics[0]}


def choose_depth_image_topic(path: Path, images: dict[str, str], requested: Sequence[str]) -> tuple[str, ...]:
    """The one image topic that depth and camera_info belong to; refuses when that is ambiguous."""
    chosen = choose_topics(path, images, requested)
    if len(chosen) != 1:
        raise RecordingError(f"{path}: depth and camera_info belong to one image topic, but "
                             f"{len(chosen)} are chosen ({', '.join(chosen)}); name the colour topic with --topics")
    return chosen


def plan_recording(path: Path, requested_topics: Sequence[str] = (), start_s: Optional[float] = None,
                   end_s: Optional[float] = None, every: int = 1, chunk_s: float = 60.0,
                   depth_topics: Optional[tuple[str, str]] = None) -> RecordingPlan:
    """Validate ``path`` and cut its chosen image topics into time chunks.

    ``depth_topics``: (depth, camera_info) of the one image topic to segment; the depth topic is
    then no image topic to segment (the chunks' ``topics`` stay the image topics only).

    ``start_s``/``end_s`` are seconds from the recording's first message; ``every``: segment every
    N-th frame of each topic; ``chunk_s``: chunk length (the unit of resuming and of Ray work).
    """
    from mcap.exceptions import McapError

    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if chunk_s <= 0:
        raise ValueError(f"chunk length must be > 0 s, got {chunk_s}")
    all_topics, images = check_recording(path)
    if depth_topics is None:
        topics = choose_topics(path, images, requested_topics)
    else:
        images = check_depth_topics(path, all_topics, images, depth_topics)
        topics = choose_depth_image_topic(path, images, requested_topics)
    # depth and camera_info are copied, and read for pairing, within the chunks: the chunks span them too
    companions = tuple(t for t in (depth_topics or ()) if t not in topics)
    times: dict[str, list[int]] = {t: [] for t in topics + companions}
    with path.open("rb") as stream:
        reader, summary, _ = _open_reader(path, stream)
        origin = summary.statistics.message_start_time if summary.statistics else 0
        begin = origin + round(start_s * 1e9) if start_s is not None else None
        finish = origin + round(end_s * 1e9) if end_s is not None else None
        try:
            for _, channel, message in reader.iter_messages(topics=list(times), starting_at=begin, ending_at=finish):
                times[channel.topic].append(message.log_time)
        except (McapError, struct.error, EOFError, ValueError) as exc:
            raise RecordingError(f"{path}: truncated or corrupt MCAP data ({type(exc).__name__}: {exc}); "
                                 "repair it with `mcap recover` first") from None
    plan = RecordingPlan(path, all_topics)
    stamps = sorted(t for values in times.values() for t in values)
    if not any(times[t] for t in topics):  # no frames: nothing to segment
        return plan
    step = round(chunk_s * 1e9)
    first_ns, last_ns = stamps[0], stamps[-1]
    start = first_ns
    index = 0
    while start <= last_ns:
        stop = start + step
        before = {t: bisect_left(v, start) for t, v in times.items()}
        inside = {t: bisect_left(v, stop) - before[t] for t, v in times.items()}
        frames = sum(len(range(-(-before[t] // every) * every, before[t] + inside[t], every)) for t in topics)
        if sum(inside.values()):
            end = stop if finish is None else min(stop, finish + 1)
            plan.chunks.append(McapChunk(path, index, start, end, topics, tuple(before.items()),
                                         sum(inside.values()), frames, first=not plan.chunks))
            index += 1
        start = stop
    return plan
