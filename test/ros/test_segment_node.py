"""The segmentation node as a real process over DDS on loopback, with the tiny model.

One node serves this module: outputs and their consistency, encodings, bad frames, the
vocabulary service (invalid requests, switching while frames stream) and diagnostics.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import GetParameters
from sensor_msgs.msg import Image

from fcclip_ros.msg import SegmentArray, Vocabulary
from fcclip_ros.srv import SetVocabulary

from .harness import (LATCHED, RELIABLE, TEST_CLASSES, TEST_STUFF, NodeProcess, Peer, demo_rgb, diagnostics_values,
                      image_message, node_status, stamp_of, wait_ready, wait_until)

pytestmark = pytest.mark.ros

NS = "/fcclip_test_main"
TIMEOUT = 90.0
MAX_CLASSES = 40
MAX_LABEL_LENGTH = 80



@pytest.fixture(scope="module")
def node(reference_root, tmp_path_factory, vision_msgs_prefix, vision_msgs_module, peer):
    process = NodeProcess(reference_root, tmp_path_factory.mktemp("node_logs"), NS, env=vision_msgs_prefix.env(),
                          params={"diagnostics_period": "0.2", "max_classes": str(MAX_CLASSES),
                                  "max_label_length": str(MAX_LABEL_LENGTH)})
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="module")
def io(node, peer, vision_msgs_module):
    """Publisher of frames and collectors of every output, created once for the module."""
    class IO:
        image = peer.node.create_publisher(Image, f"{NS}/image", RELIABLE)
        labels = peer.collect(Image, f"{node.fqn}/labels")
        segment_ids = peer.collect(Image, f"{node.fqn}/segment_ids")
        segments = peer.collect(SegmentArray, f"{node.fqn}/segments")
        detections = peer.collect(vision_msgs_module.Detection2DArray, f"{node.fqn}/detections")
        overlay = peer.collect(Image, f"{node.fqn}/overlay")
        vocabulary = peer.collect(Vocabulary, f"{node.fqn}/vocabulary", LATCHED)
        diagnostics = peer.collect(DiagnosticArray, "/diagnostics")

    wait_ready(node, IO.image)
    return IO


def send(peer: Peer, io, rgb: np.ndarray, frame_id: str = "test_camera", encoding: str = "rgb8") -> tuple[int, int]:
    stamp = peer.next_stamp()
    io.image.publish(image_message(rgb, stamp, frame_id, encoding))
    return stamp


def as_array(msg: Image, dtype: type) -> np.ndarray:
    return np.frombuffer(msg.data, dtype).reshape(msg.height, msg.width)


def vocabularies(io) -> dict[int, list[str]]:
    return {m.version: list(m.labels) for m in io.vocabulary.snapshot()}


def latest_status(io, node: NodeProcess, after: float = 0.0) -> dict[str, str]:
    """Values of the newest diagnostics status of the node published after time ``after``."""
    def find():
        for array in reversed(io.diagnostics.snapshot()):
            status = node_status(array, node)
            if status is not None and array.header.stamp.sec + array.header.stamp.nanosec * 1e-9 >= after:
                return status
        return None

    return diagnostics_values(wait_until(find, TIMEOUT, "a diagnostics status"))


def check_frame(labels: Image, segment_ids: Image, segments: SegmentArray, vocabulary: list[str]) -> None:
    """Label image, segment-id image and SegmentArray describe the same segmentation."""
    assert (labels.encoding, segment_ids.encoding) == ("mono16", "32SC1")
    ids = as_array(segment_ids, np.int32)
    classes = as_array(labels, np.uint16)
    assert (segments.height, segments.width) == ids.shape == classes.shape
    by_id = {s.id: s for s in segments.segments}
    assert len(by_id) == len(segments.segments) and 0 not in by_id
    present = set(np.unique(ids).tolist()) - {0}
    assert present <= set(by_id), "every id in the image is in the SegmentArray"
    expected_labels = np.full(ids.shape, 65535, np.uint16)
    for seg in segments.segments:
        mask = ids == seg.id
        assert seg.area == int(mask.sum())
        assert seg.class_id < len(vocabulary) and seg.label == vocabulary[seg.class_id]
        assert 0.0 <= seg.score <= 1.0
        if seg.area:
            ys, xs = np.nonzero(mask)
            assert (seg.bbox.x_offset, seg.bbox.y_offset) == (xs.min(), ys.min())
            assert (seg.bbox.width, seg.bbox.height) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert seg.centroid_x == pytest.approx(xs.mean(), abs=1e-3)
            assert seg.centroid_y == pytest.approx(ys.mean(), abs=1e-3)
        expected_labels[mask] = seg.class_id
    np.testing.assert_array_equal(classes, expected_labels)


def test_outputs_keep_the_header_and_agree_with_each_other(peer, io, node) -> None:
    rgb = demo_rgb("chelsea.jpg")
    stamp = send(peer, io, rgb, frame_id="cat_camera")
    outputs = {name: getattr(io, name).for_stamp(stamp, TIMEOUT)
               for name in ("labels", "segment_ids", "segments", "detections", "overlay")}
    for msg in outputs.values():
        assert msg.header.frame_id == "cat_camera"
    for name in ("labels", "segment_ids", "overlay"):
        assert (outputs[name].height, outputs[name].width) == rgb.shape[:2]
    assert outputs["overlay"].encoding == "rgb8"
    segments = outputs["segments"]
    vocabulary = vocabularies(io)[segments.vocabulary_version]
    assert vocabulary == [c.split(",")[0] for c in TEST_CLASSES]
    assert segments.segments, "the tiny model finds at least one segment in a photo"
    check_frame(outputs["labels"], outputs["segment_ids"], segments, vocabulary)
    for seg in segments.segments:
        assert seg.is_thing == (seg.label not in TEST_STUFF)
    things = [s for s in segments.segments if s.is_thing]
    detections = outputs["detections"].detections
    # the detection id is the segment's track id ("" until its track is confirmed)
    assert [d.id for d in detections] == [str(s.track_id) if s.track_id else "" for s in things]
    for detection, seg in zip(detections, things):
        assert detection.header.frame_id == "cat_camera" and stamp_of(detection) == stamp
        assert detection.results[0].hypothesis.class_id == seg.label
        assert detection.results[0].hypothesis.score == pytest.approx(seg.score, abs=1e-6)
        assert detection.bbox.size_x == seg.bbox.width and detection.bbox.size_y == seg.bbox.height
        assert detection.bbox.center.position.x == seg.bbox.x_offset + seg.bbox.width / 2


def test_colour_order_of_the_encoding_is_honoured(peer, io) -> None:
    rgb = demo_rgb("coffee.jpg")
    outputs = {}
    for name, pixels, encoding in (("rgb8", rgb, "rgb8"), ("bgr8", rgb, "bgr8"),
                                   ("swapped", np.ascontiguousarray(rgb[:, :, ::-1]), "rgb8")):
        stamp = send(peer, io, pixels, encoding=encoding)
        outputs[name] = as_array(io.segment_ids.for_stamp(stamp, TIMEOUT), np.int32)
    # The same picture sent in the other byte order gives the same segmentation ...
    np.testing.assert_array_equal(outputs["rgb8"], outputs["bgr8"])
    # ... while really swapping the colours changes it (so the comparison above means something).
    assert not np.array_equal(outputs["rgb8"], outputs["swapped"])


def test_bad_frames_are_skipped_and_counted(peer, io, node) -> None:
    rgb = demo_rgb("rocket.jpg", width=64)
    good = image_message(rgb, (0, 0), "cam")
    bad_frames = []
    for change in (dict(encoding="bayer_rggb8"), dict(step=64 * 3 + 1), dict(height=0, width=0, step=0),
                   dict(height=200000, width=200000, step=600000)):
        msg = image_message(rgb, (0, 0), "cam")
        for field, value in change.items():
            setattr(msg, field, value)
        if "height" in change and change["height"] == 0:
            msg.data = good.data[:0]
        bad_frames.append(msg)
    invalid_before = int(latest_status(io, node)["frames_invalid"])
    for count, msg in enumerate(bad_frames, start=1):
        msg.header.stamp.sec, msg.header.stamp.nanosec = peer.next_stamp()
        io.image.publish(msg)
        wait_until(lambda: int(latest_status(io, node)["frames_invalid"]) >= invalid_before + count, TIMEOUT,
                   f"bad frame {count} to be counted")
    assert node.alive()
    stamp = send(peer, io, rgb)
    assert io.segments.for_stamp(stamp, TIMEOUT).width == 64
    values = latest_status(io, node)
    assert int(values["frames_invalid"]) == invalid_before + len(bad_frames)
    assert "skipping frame: unsupported encoding 'bayer_rggb8'" in node.stderr


REJECTED = [
    (SetVocabulary.Request(classes=[]), "empty"),
    (SetVocabulary.Request(classes=["cat", ""]), "empty"),
    (SetVocabulary.Request(classes=["cat", "dog", "cat"]), "repeats class 0"),
    (SetVocabulary.Request(classes=["cat, kitten", "cat, kitty"]), "same label"),
    (SetVocabulary.Request(classes=[f"class {i}" for i in range(MAX_CLASSES + 1)]), "exceed the limit"),
    (SetVocabulary.Request(classes=["cat", "x" * (MAX_LABEL_LENGTH + 1)]), "characters long"),
    (SetVocabulary.Request(classes=["cat", "dog"], stuff=["sky"]), "stuff entry 'sky' matches no class"),
]


def current_parameter(peer: Peer, node: NodeProcess, name: str) -> list[str]:
    reply = peer.call(GetParameters, f"{node.fqn}/get_parameters", GetParameters.Request(names=[name]))
    return list(reply.values[0].string_array_value)


def test_invalid_vocabulary_requests_change_nothing(peer, io, node) -> None:
    version_msgs = len(io.vocabulary.snapshot())
    before = latest_status(io, node)["vocabulary_version"]
    parameter_before = current_parameter(peer, node, "vocabulary")
    for request, phrase in REJECTED:
        reply = peer.call(SetVocabulary, f"{node.fqn}/set_vocabulary", request)
        assert not reply.success, request
        assert phrase in reply.message.lower(), reply.message
        assert reply.message.startswith("rejected, nothing changed")
        assert str(reply.version) == before and list(reply.class_ids) == []
    time.sleep(0.5)
    assert len(io.vocabulary.snapshot()) == version_msgs
    assert latest_status(io, node, after=time.time())["vocabulary_version"] == before
    assert current_parameter(peer, node, "vocabulary") == parameter_before


SWITCHES = [
    (["dog", "tree", "road"], ["road"]),
    (["bottle, flask", "chair", "sky", "grass", "car"], ["sky", "grass"]),
    (["person", "wall"], ["wall"]),
]


def test_vocabulary_switches_cleanly_while_frames_stream(peer, io, node) -> None:
    pictures = [demo_rgb(name, width=160) for name in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")]
    sent: list[tuple[int, int]] = []
    streaming = threading.Event()
    streaming.set()

    def stream() -> None:
        index = 0
        while streaming.is_set():
            sent.append(send(peer, io, pictures[index % len(pictures)]))
            index += 1
            time.sleep(0.05)

    first_stamp = peer.next_stamp()
    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    replies = []
    try:
        for classes, stuff in SWITCHES:
            io.segments.wait_for(lambda m: stamp_of(m) > first_stamp, TIMEOUT, "frames before the switch")
            reply = peer.call(SetVocabulary, f"{node.fqn}/set_vocabulary",
                              SetVocabulary.Request(classes=classes, stuff=stuff))
            assert reply.success, reply.message
            replies.append(reply)
            # Let frames with the new vocabulary come out before the next switch.
            version = reply.version
            io.segments.wait_for(lambda m: m.vocabulary_version == version, TIMEOUT, f"frames of version {version}")
            first_stamp = max(sent)
    finally:
        streaming.clear()
        streamer.join(5)

    versions = [r.version for r in replies]
    assert versions == sorted(set(versions)), "versions strictly increase"
    for reply, (classes, _) in zip(replies, SWITCHES):
        assert list(reply.labels) == [c.split(",")[0].strip() for c in classes]
        assert list(reply.class_ids) == list(range(len(classes)))
    known = wait_until(lambda: (lambda v: v if set(versions) <= set(v) else None)(vocabularies(io)), TIMEOUT,
                       f"~/vocabulary of every version {versions}; got {sorted(vocabularies(io))}")
    frames = sorted(io.segments.snapshot(), key=stamp_of)
    assert [m.vocabulary_version for m in frames] == sorted(m.vocabulary_version for m in frames), \
        "a newer frame never carries an older vocabulary"
    labels_by_stamp = {stamp_of(m): m for m in io.labels.snapshot()}
    ids_by_stamp = {stamp_of(m): m for m in io.segment_ids.snapshot()}
    checked = 0
    for segments in frames:
        vocabulary = known[segments.vocabulary_version]
        for seg in segments.segments:
            assert seg.label == vocabulary[seg.class_id], "labels always come from the frame's own vocabulary"
        stamp = stamp_of(segments)
        if stamp in labels_by_stamp and stamp in ids_by_stamp:
            check_frame(labels_by_stamp[stamp], ids_by_stamp[stamp], segments, vocabulary)
            checked += 1
    assert checked >= len(SWITCHES)
    final_classes, final_stuff = SWITCHES[-1]
    assert current_parameter(peer, node, "vocabulary") == final_classes
    assert current_parameter(peer, node, "vocabulary_stuff") == final_stuff


def test_late_subscribers_get_the_current_vocabulary(peer, node) -> None:
    late = peer.collect(Vocabulary, f"{node.fqn}/vocabulary", LATCHED)
    msg = late.wait_for(lambda m: True, TIMEOUT, "the latched vocabulary")
    assert len(msg.labels) == len(msg.class_ids) == len(msg.synonyms) == len(msg.is_thing)
    assert list(msg.class_ids) == list(range(len(msg.labels)))


def test_diagnostics_report_model_device_frames_and_latency(peer, io, node) -> None:
    stamp = send(peer, io, demo_rgb("astronaut.jpg", width=96))
    io.segments.for_stamp(stamp, TIMEOUT)
    values = latest_status(io, node, after=time.time())
    assert values["model_config"] == "fixture_tiny"
    assert values["weights"].endswith("tiny/weights.pth")
    assert values["device"] == "cpu" and values["input_topic"] == f"{NS}/image"
    assert int(values["cpu_threads"]) >= 1
    frames_in, processed, dropped, invalid = (int(values[k]) for k in (
        "frames_in", "frames_processed", "frames_dropped", "frames_invalid"))
    assert processed >= 1 and processed + dropped + invalid <= frames_in <= processed + dropped + invalid + 2
    for key in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "inference_p50_ms"):
        assert float(values[key]) > 0, key
    assert float(values["latency_p50_ms"]) <= float(values["latency_p99_ms"]) <= float(values["latency_max_ms"])
    assert int(values["classes"]) >= 1 and int(values["vocabulary_version"]) >= 1
