"""Hostile input over DDS, each case answered clearly and followed by a good frame that is processed:
decompression bombs, OpenCV's own pixel cap, extreme aspect ratios, Unicode class names, a
text-embedding cache that stays bounded, and a burst of 50 concurrent set_vocabulary calls."""
from __future__ import annotations

import os
import signal

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image

from fcclip_ros.conversions import byte_field
from fcclip_ros.msg import SegmentArray
from fcclip_ros.srv import SetVocabulary

from .harness import (RELIABLE, NodeProcess, demo_rgb, diagnostics_values, image_message, node_status, wait_ready,
                      wait_until)

pytestmark = pytest.mark.ros

TIMEOUT = 90.0
OPENCV_PIXEL_CAP = 1_000_000  # OPENCV_IO_MAX_IMAGE_PIXELS of the compressed node: below the node's own limit


def latest_values(collector, node: NodeProcess, predicate, what: str) -> dict[str, str]:
    def find():
        for array in reversed(collector.snapshot()):
            status = node_status(array, node)
            if status is not None and predicate(diagnostics_values(status)):
                return status
        return None

    return diagnostics_values(wait_until(find, TIMEOUT, what))


def compressed(data: bytes, stamp: tuple[int, int], fmt: str = "png") -> CompressedImage:
    msg = CompressedImage(format=fmt, data=byte_field(np.frombuffer(data, np.uint8)))
    msg.header.frame_id = "hostile_camera"
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    return msg


def test_compressed_bombs_are_invalid_frames_and_the_next_good_frame_is_processed(reference_root, tmp_path, peer,
                                                                                    png_bomb) -> None:
    ns = "/fcclip_test_bombs"
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": str(OPENCV_PIXEL_CAP)}
    node = NodeProcess(reference_root, tmp_path, ns, env=env,
                       params={"image_transport": "compressed", "diagnostics_period": "0.2",
                               "image_qos.reliability": "reliable", "vocabulary_queue_depth": "2"})
    publisher = peer.node.create_publisher(CompressedImage, f"{ns}/image/compressed", RELIABLE)
    segments = peer.collect(SegmentArray, f"{node.fqn}/segments")
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    ok, good = cv2.imencode(".png", demo_rgb("chelsea.jpg", width=160)[:, :, ::-1])
    try:
        wait_ready(node, publisher)
        # 30000 x 30000 declared in a file of a few hundred bytes: refused from the header, no decoding.
        publisher.publish(compressed(png_bomb(30000, 30000), peer.next_stamp()))
        values = latest_values(diagnostics, node, lambda v: v.get("frames_invalid") == "1", "the bomb counted invalid")
        assert "30000x30000 exceeds the limits" in values["last_error"] and values["frames_failed"] == "0"
        stamp = peer.next_stamp()
        publisher.publish(compressed(good.tobytes(), stamp))
        segments.for_stamp(stamp, TIMEOUT)

        # Within the node's limits but above OpenCV's own cap: OpenCV refuses; still an invalid frame.
        publisher.publish(compressed(png_bomb(2000, 2000), peer.next_stamp()))
        values = latest_values(diagnostics, node, lambda v: v.get("frames_invalid") == "2", "OpenCV's refusal")
        assert "could not decode compressed png image (2000x2000)" in values["last_error"]
        assert values["frames_failed"] == "0", "OpenCV's assertion is not a failed frame"
        stamp = peer.next_stamp()
        publisher.publish(compressed(good.tobytes(), stamp))
        segments.for_stamp(stamp, TIMEOUT)
        assert "skipping frame" in node.stderr and "frame failed" not in node.stderr

        # vocabulary_queue_depth 2: of a burst of 12 slow requests, those beyond the queue hear "busy".
        replies = burst(peer, node, 12, names_per_call=100)
        busy = [r for r in replies if not r.success]
        assert busy and all("busy: 2 requests are already waiting" in r.message for r in busy)
        assert len(replies) - len(busy) >= 3, "the running request and the two queued ones succeed"
        stamp = peer.next_stamp()
        publisher.publish(compressed(good.tobytes(), stamp))
        segments.for_stamp(stamp, TIMEOUT)
        assert node.stop(signal.SIGINT) == 0
    finally:
        node.kill()
    assert "Traceback" not in node.output, node.output


@pytest.fixture(scope="module")
def raw_node(reference_root, tmp_path_factory, peer):
    ns = "/fcclip_test_hostile"
    node = NodeProcess(reference_root, tmp_path_factory.mktemp("hostile"), ns,
                       params={"diagnostics_period": "0.2", "text_cache_max_names": "20",
                               "image_qos.reliability": "reliable"})
    publisher = peer.node.create_publisher(Image, f"{ns}/image", RELIABLE)
    segments = peer.collect(SegmentArray, f"{node.fqn}/segments")
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    try:
        wait_ready(node, publisher)
        yield node, publisher, segments, diagnostics
        assert node.stop(signal.SIGINT) == 0
        assert "Traceback" not in node.output, node.output
    finally:
        node.kill()


def good_frame_is_processed(peer, raw_node) -> SegmentArray:
    node, publisher, segments, _ = raw_node
    stamp = peer.next_stamp()
    publisher.publish(image_message(demo_rgb("astronaut.jpg", width=120), stamp, "hostile_camera"))
    return segments.for_stamp(stamp, TIMEOUT)


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 1)])
def test_extreme_aspect_ratios_are_segmented(peer, raw_node, shape) -> None:
    node, publisher, segments, _ = raw_node
    stamp = peer.next_stamp()
    publisher.publish(image_message(np.full((*shape, 3), 90, np.uint8), stamp, "hostile_camera"))
    result = segments.for_stamp(stamp, TIMEOUT)
    assert (result.height, result.width) == shape
    good_frame_is_processed(peer, raw_node)
    assert "frame failed" not in node.stderr


def test_unicode_class_names_are_accepted_and_control_characters_named(peer, raw_node) -> None:
    node = raw_node[0]
    service = f"{node.fqn}/set_vocabulary"
    family = "family \U0001F468\u200d\U0001F469\u200d\U0001F467"
    reply = peer.call(SetVocabulary, service, SetVocabulary.Request(classes=["coffee\u00a0cup", family, " cafe\u0301 "]))
    assert reply.success, reply.message
    assert list(reply.labels) == ["coffee\u00a0cup", family, "caf\u00e9"]
    result = good_frame_is_processed(peer, raw_node)
    assert result.vocabulary_version == reply.version, "the next frame is segmented with the new classes"
    assert all(s.label in reply.labels for s in result.segments)

    bad = peer.call(SetVocabulary, service, SetVocabulary.Request(classes=["cup", "mug\x07"]))
    assert not bad.success
    assert "class 1" in bad.message and "control character U+0007 at position 3" in bad.message
    assert bad.version == reply.version, "nothing changed"
    good_frame_is_processed(peer, raw_node)


def test_text_embedding_cache_stays_within_its_cap(peer, raw_node) -> None:
    node, _, _, diagnostics = raw_node
    reply = peer.call(SetVocabulary, f"{node.fqn}/set_vocabulary",
                      SetVocabulary.Request(classes=[f"thing number {i}" for i in range(25)]))
    assert reply.success, reply.message
    values = latest_values(diagnostics, node, lambda v: v.get("vocabulary_version") == str(reply.version),
                           "diagnostics after the new vocabulary")
    assert values["text_cache_names"] == "20/20"
    assert int(values["text_cache_evicted"]) >= 5
    good_frame_is_processed(peer, raw_node)


def burst(peer, node: NodeProcess, calls: int, names_per_call: int = 2) -> list:
    """``calls`` set_vocabulary requests from as many clients at once; every reply (waits for all)."""
    clients = [peer.node.create_client(SetVocabulary, f"{node.fqn}/set_vocabulary") for _ in range(calls)]
    try:
        for client in clients:
            assert client.wait_for_service(timeout_sec=TIMEOUT)
        futures = [client.call_async(SetVocabulary.Request(
            classes=[f"burst {i} item {j}" for j in range(names_per_call)])) for i, client in enumerate(clients)]
        wait_until(lambda: all(f.done() for f in futures), 300.0, f"answers to all {calls} calls")
        return [f.result() for f in futures]
    finally:
        for client in clients:
            peer.node.destroy_client(client)


def test_a_burst_of_50_concurrent_set_vocabulary_calls_is_answered_in_full(peer, raw_node) -> None:
    node = raw_node[0]
    replies = burst(peer, node, 50)
    assert all(r.success for r in replies), [r.message for r in replies if not r.success]
    versions = sorted(r.version for r in replies)
    assert versions == list(range(versions[0], versions[0] + 50)), "each call got a version of its own"
    good_frame_is_processed(peer, raw_node)
