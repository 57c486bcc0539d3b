"""fcclip-segment on ROS 2 recordings: real CDR in, the node's messages out, bad files refused.

The recordings are written by the tests with rclpy's serialisation and the installed message
definitions; the outputs are read back with mcap-ros2-support (as Foxglove would) and with
rclpy's deserialisation (as ros2 bag play would hand them to subscribers).
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rclpy._rclpy_pybind11 import RMWError
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from fcclip_core.jobs.predictor_spec import PredictorSpec
from fcclip_core.vocabulary import parse_vocabulary
from fcclip_ros.conversions import compressed_to_rgb, image_to_rgb, panoptic_label_image
from fcclip_ros.msg import SegmentArray

from ..core.jobs.recordings import compressed_image, demo_rgb, raw_image, write_recording

CLASSES = ["cat, kitty", "person", "carpet, rug", "wall"]
STUFF = ["carpet", "wall"]
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def model_args(reference_root: Path, short_side: int = 64) -> list[str]:
    return ["--model-config", "fixture_tiny", "--weights", str(reference_root / "tiny" / "weights.pth"),
            "--short-side", str(short_side), "--threads", "1", "--vocabulary", *CLASSES, "--stuff", *STUFF]


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "fcclip-segment"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=timeout)


def messages(path: Path) -> list[tuple[str, int, bytes]]:
    """(topic, log time, CDR bytes) of every message in log-time order."""
    with path.open("rb") as stream:
        return [(c.topic, m.log_time, bytes(m.data)) for _, c, m in make_reader(stream).iter_messages()]


def ros_messages(path: Path) -> list[tuple[str, int, object]]:
    """(topic, log time, message deserialised by rclpy) in log-time order.

    Compared as messages, not bytes: the CDR padding bytes rclpy writes are not initialised.
    """
    def decode(schema, message) -> object:
        try:
            return deserialize_message(message.data, message_class(schema.name))
        except RMWError:  # the malformed input message, copied as it was
            return bytes(message.data)

    with path.open("rb") as stream:
        return [(c.topic, m.log_time, decode(s, m)) for s, c, m in make_reader(stream).iter_messages()]


def message_class(name: str) -> type:
    package, _, short = name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), short)


def camera_recording(path: Path, frames: int = 4) -> tuple[Path, dict]:
    """Two cameras (raw rgb8 and PNG compressed) with out-of-order header stamps, and a bayer camera."""
    pictures = [demo_rgb(name, 96) for name in ("chelsea.jpg", "astronaut.jpg", "coffee.jpg")]
    entries, inputs = [], {}
    for k in range(frames):
        rgb = pictures[k % len(pictures)]
        header_ns = T0 + (frames - k) * 100 * MS  # stamps run backwards while log times run forwards
        front = raw_image(rgb, header_ns)
        rear = compressed_image(rgb[:, ::-1].copy(), header_ns + 1)
        bayer = Image(header=front.header, height=8, width=8, encoding="bayer_rggb8", step=8, data=bytes(64))
        entries += [("/front/image_raw", T0 + k * 100 * MS, front), ("/rear/image/compressed", T0 + k * 100 * MS + 1, rear),
                    ("/ir/image_raw", T0 + k * 100 * MS + 2, bayer)]
        if k == 0:  # a message cut short in the recording
            entries.append(("/ir/image_raw", T0 + 3, (Image, b"\x00\x01\x00\x00\x05")))
        inputs[("/front/image_raw", T0 + k * 100 * MS)] = rgb
        inputs[("/rear/image/compressed", T0 + k * 100 * MS + 1)] = rgb[:, ::-1]
    return write_recording(path, entries), inputs


@pytest.fixture(scope="module")
def predictor(reference_root):
    """The Predictor the tool builds, in this process (one thread, as the tool is told)."""
    threads = torch.get_num_threads()
    spec = PredictorSpec("fixture_tiny", reference_root / "tiny" / "weights.pth", input_short_side=64,
                         vocabulary=parse_vocabulary(CLASSES, stuff=STUFF), threads=1)
    yield spec.build()
    torch.set_num_threads(threads)


def test_a_recording_becomes_the_nodes_messages(reference_root, tmp_path, predictor) -> None:
    source, inputs = camera_recording(tmp_path / "drive.mcap")
    out = tmp_path / "out"
    done = run_cli(str(source), "-o", str(out), *model_args(reference_root), "--chunk-seconds", "0.15")
    assert done.returncode == 0, done.stderr
    assert "skipped 4 frame(s): /ir/image_raw: unsupported encoding 'bayer_rggb8'" in done.stdout
    assert "skipped 1 frame(s): /ir/image_raw: malformed message (RMWError)" in done.stdout
    assert "segmented 8 frame(s)" in done.stdout and "segments per class:" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["drive.mcap"], "no parts or temporary files are left"

    written = messages(out / "drive.mcap")
    original = messages(source)
    assert [m for m in written if m[0] in {"/front/image_raw", "/rear/image/compressed", "/ir/image_raw"}] == original

    # Decoded without ROS, from the message definitions stored in the file.
    with (out / "drive.mcap").open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        readable = [c.topic for c in reader.get_summary().channels.values() if c.topic != "/ir/image_raw"]
        decoded = [(c.topic, s.name, d) for s, c, _, d in reader.iter_decoded_messages(topics=readable)]
    schemas = {topic: name for topic, name, _ in decoded}
    assert schemas["/fcclip/front/image_raw/segments"] == "fcclip_ros/msg/SegmentArray"
    assert schemas["/fcclip/rear/image/compressed/detections"] == "vision_msgs/msg/Detection2DArray"
    assert schemas["/fcclip/vocabulary"] == "fcclip_ros/msg/Vocabulary"
    assert [t for t, _, _ in decoded].index("/fcclip/vocabulary") < [t for t, _, _ in decoded].index(
        "/fcclip/front/image_raw/labels"), "the vocabulary precedes the first labelled frame"
    vocabulary = next(d for t, _, d in decoded if t == "/fcclip/vocabulary")
    assert list(vocabulary.labels) == ["cat", "person", "carpet", "wall"] and vocabulary.version == 1
    assert not any(t.startswith("/fcclip/ir/") for t in schemas), "skipped frames have no outputs"
    assert "/ir/image_raw" in {t for t, _, _ in written}, "the skipped topic is still copied"

    # Decoded by rclpy: labels are the Predictor's, headers are the inputs'.
    by_key = {(topic, log_time): data for topic, log_time, data in written}
    labelled = 0
    for (topic, log_time), rgb in inputs.items():
        expected = predictor.predict(np.ascontiguousarray(rgb))
        raw = topic.endswith("image_raw")
        original_msg = deserialize_message(by_key[(topic, log_time)], Image if raw else CompressedImage)
        decoded_rgb = image_to_rgb(original_msg) if raw else compressed_to_rgb(original_msg)
        np.testing.assert_array_equal(decoded_rgb, rgb)
        labels = deserialize_message(by_key[(f"/fcclip{topic}/labels", log_time)], Image)
        segments = deserialize_message(by_key[(f"/fcclip{topic}/segments", log_time)], SegmentArray)
        assert labels.header == original_msg.header == segments.header
        assert (labels.encoding, labels.height, labels.width) == ("mono16", *rgb.shape[:2])
        np.testing.assert_array_equal(np.frombuffer(labels.data, np.uint16).reshape(rgb.shape[:2]),
                                      panoptic_label_image(expected.panoptic))
        assert [(s.id, s.label, s.area) for s in segments.segments] == [
            (s.id, s.label, s.area) for s in expected.panoptic.segments]
        labelled += 1
    assert labelled == 8


def test_every_start_end_and_topic_choice(reference_root, tmp_path) -> None:
    source, _ = camera_recording(tmp_path / "drive.mcap", frames=6)
    out = tmp_path / "out"
    done = run_cli(str(source), "-o", str(out), *model_args(reference_root), "--topics", "/front/image_raw",
                   "--every", "2", "--start", "0.1", "--end", "0.45", "--outputs", "labels", "segments")
    assert done.returncode == 0, done.stderr
    topics = [(t, lt) for t, lt, _ in messages(out / "drive.mcap")]
    # front frames at 0.1 .. 0.4 s are inside the range; every 2nd of them is labelled
    assert [lt for t, lt in topics if t == "/front/image_raw"] == [T0 + k * 100 * MS for k in (1, 2, 3, 4)]
    assert [lt for t, lt in topics if t == "/fcclip/front/image_raw/labels"] == [T0 + k * 100 * MS for k in (1, 3)]
    assert {t for t, _ in topics} == {"/front/image_raw", "/fcclip/front/image_raw/labels",
                                      "/fcclip/front/image_raw/segments", "/fcclip/vocabulary", "/fcclip/label_info"}


def test_bad_recordings_fail_clearly_and_leave_no_output(reference_root, tmp_path) -> None:
    good, _ = camera_recording(tmp_path / "good.mcap", frames=2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mcap").write_bytes(b"")
    (bad / "old.bag").write_bytes(b"#ROSBAG V2.0\n" + bytes(100))
    data = good.read_bytes()
    (bad / "cut.mcap").write_bytes(data[: len(data) // 2])
    write_recording(bad / "imu.mcap", [("/tf_like", T0, SegmentArray())])
    out = tmp_path / "out"
    done = run_cli(str(bad), "-o", str(out), *model_args(reference_root))
    assert done.returncode != 0
    for expected in ("empty.mcap: empty file", "old.bag: a ROS 1 bag", "cut.mcap: truncated",
                     "imu.mcap: no image topics", "nothing to segment"):
        assert expected in done.stderr, done.stderr
    assert not out.exists() or not any(out.iterdir()), "no partial output"

    # A good file next to a bad one: the good one is written, the exit status still says something failed.
    mixed = run_cli(str(good), str(bad / "cut.mcap"), "-o", str(out), *model_args(reference_root))
    assert mixed.returncode == 1 and "FAILED" in mixed.stdout
    assert sorted(p.name for p in out.iterdir()) == ["good.mcap"]


def test_an_interrupted_run_continues_where_it_stopped(reference_root, tmp_path) -> None:
    source, _ = camera_recording(tmp_path / "drive.mcap", frames=24)
    args = [str(source), *model_args(reference_root, short_side=160), "--chunk-seconds", "0.2"]
    reference = run_cli(*args, "-o", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "out"
    parts = out / ".drive.parts"
    script = Path(sys.executable).parent / "fcclip-segment"
    process = subprocess.Popen([str(script), *args, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(parts.glob("part-*.mcap")) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    finished = sorted(parts.glob("part-*.mcap"))
    assert 1 <= len(finished) < 12, "killed in the middle of the job"
    assert not (out / "drive.mcap").exists(), "no half-written output"

    resumed = run_cli(*args, "-o", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed:" in resumed.stdout
    assert ros_messages(out / "drive.mcap") == ros_messages(tmp_path / "reference" / "drive.mcap")
    assert not parts.exists()
