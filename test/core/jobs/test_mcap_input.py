"""Recordings as job input: every kind of bad file gets its own clear error; chunks sample like the whole file."""
from __future__ import annotations

from pathlib import Path

import pytest
from mcap.writer import Writer

from fcclip_core.jobs.mcap_input import RecordingError, check_recording, plan_recording

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def opaque_recording(path: Path, topics: dict[str, str], times: dict[str, list[int]], profile: str = "ros2",
                     encoding: str = "cdr") -> Path:
    """An MCAP with the given topics and log times; payloads are opaque (planning never decodes them)."""
    with path.open("wb") as stream:
        writer = Writer(stream)
        writer.start(profile=profile, library="test")
        ids = {}
        for topic, schema in topics.items():
            schema_id = writer.register_schema(schema, "ros2msg", b"# definition")
            ids[topic] = writer.register_channel(topic, encoding, schema_id)
        events = sorted((t, topic) for topic, values in times.items() for t in values)
        for log_time, topic in events:
            writer.add_message(ids[topic], log_time=log_time, data=b"\x00\x01\x00\x00", publish_time=log_time)
        writer.finish()
    return path


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return opaque_recording(
        tmp_path / "run.mcap", {"/front/image_raw": IMAGE, "/rear/image/compressed": COMPRESSED, "/imu": "sensor_msgs/msg/Imu"},
        {"/front/image_raw": [T0 + k * 100 * MS for k in range(10)],
         "/rear/image/compressed": [T0 + 50 * MS + k * 200 * MS for k in range(5)],
         "/imu": [T0 + k * 10 * MS for k in range(100)]})


def test_image_topics_are_found_by_type(recording: Path) -> None:
    topics, images = check_recording(recording)
    assert images == {"/front/image_raw": "raw", "/rear/image/compressed": "compressed"}
    assert {t.topic: t.messages for t in topics} == {"/front/image_raw": 10, "/rear/image/compressed": 5, "/imu": 100}


@pytest.mark.parametrize("chunk_s", [0.25, 0.3, 10.0])
def test_every_nth_frame_is_the_same_however_the_file_is_chunked(recording: Path, chunk_s: float) -> None:
    plan = plan_recording(recording, every=3, chunk_s=chunk_s)
    # front: 10 frames -> indices 0, 3, 6, 9; rear: 5 -> 0, 3
    assert plan.frames == 6
    chunks = plan.chunks
    assert chunks[0].first and not any(c.first for c in chunks[1:])
    assert all(a.end_ns <= b.start_ns for a, b in zip(chunks, chunks[1:]))
    assert sum(c.messages for c in chunks) == 15
    for chunk in chunks:
        first = dict(chunk.first_index)
        assert first["/front/image_raw"] == sum(1 for k in range(10) if T0 + k * 100 * MS < chunk.start_ns)


def test_time_range_and_topic_choice(recording: Path) -> None:
    plan = plan_recording(recording, ["/front/image_raw"], start_s=0.2, end_s=0.5, chunk_s=1.0)
    assert [c.topics for c in plan.chunks] == [("/front/image_raw",)]
    assert plan.frames == 4  # log times 0.2, 0.3, 0.4, 0.5 s (both ends included)
    assert plan.chunks[0].start_ns == T0 + 200 * MS and plan.chunks[0].end_ns == T0 + 500 * MS + 1
    with pytest.raises(RecordingError, match="not image topics of this recording: /imu"):
        plan_recording(recording, ["/imu"])


def test_bad_files_each_get_a_clear_error(tmp_path: Path, recording: Path) -> None:
    cases = {
        "empty file": tmp_path / "empty.mcap",
        "a ROS 1 bag": tmp_path / "old.bag",
        "not an MCAP file": tmp_path / "notes.mcap",
        "truncated": tmp_path / "cut.mcap",
        "not a ROS 2 recording": opaque_recording(tmp_path / "json.mcap", {"/a": IMAGE}, {"/a": [T0]}, profile="",
                                                  encoding="json"),
        "no image topics": opaque_recording(tmp_path / "imu.mcap", {"/imu": "sensor_msgs/msg/Imu"}, {"/imu": [T0]}),
    }
    cases["empty file"].write_bytes(b"")
    cases["a ROS 1 bag"].write_bytes(b"#ROSBAG V2.0\n" + bytes(4096))
    cases["not an MCAP file"].write_text("hello")
    data = recording.read_bytes()
    cases["truncated"].write_bytes(data[: len(data) * 2 // 3])
    for expected, path in cases.items():
        with pytest.raises(RecordingError) as error:
            plan_recording(path)
        assert expected in str(error.value) and str(path) in str(error.value)


def test_depth_topics_set_apart_and_spanned_by_the_chunks(tmp_path: Path) -> None:
    info = "sensor_msgs/msg/CameraInfo"
    source = opaque_recording(
        tmp_path / "rgbd.mcap", {"/color": IMAGE, "/ir": IMAGE, "/depth": IMAGE, "/info": info},
        {"/color": [T0 + k * 100 * MS for k in range(5)], "/ir": [T0 + 5 * MS],
         "/depth": [T0 - 10 * MS + k * 100 * MS for k in range(6)], "/info": [T0 - 20 * MS]})
    plan = plan_recording(source, ["/color"], chunk_s=0.2, depth_topics=("/depth", "/info"))
    assert all(c.topics == ("/color",) for c in plan.chunks), "the depth topic is not segmented"
    assert plan.frames == 5
    assert plan.chunks[0].start_ns == T0 - 20 * MS, "chunks begin with the first camera_info"
    assert plan.chunks[-1].end_ns > T0 + 490 * MS, "and end after the last depth"
    assert sum(c.messages for c in plan.chunks) == 12
    with pytest.raises(RecordingError, match=r"one image topic, but 2 are chosen \(/color, /ir\)"):
        plan_recording(source, depth_topics=("/depth", "/info"))
    with pytest.raises(RecordingError, match="/info is sensor_msgs/msg/CameraInfo, expected sensor_msgs/msg/Image"):
        plan_recording(source, ["/color"], depth_topics=("/info", "/depth"))
    with pytest.raises(RecordingError, match="no topic /missing in this recording"):
        plan_recording(source, ["/color"], depth_topics=("/depth", "/missing"))
