"""Start-up and shutdown of the node process: invalid parameters (configure fails, the node stays
up), compressed input, a vocabulary that survives a restart, clean exits on SIGTERM and SIGINT."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import yaml
from sensor_msgs.msg import CompressedImage, Image

from fcclip_ros.conversions import byte_field
from fcclip_ros.msg import SegmentArray, Vocabulary
from fcclip_ros.srv import SetVocabulary

from .harness import (LATCHED, RELIABLE, NodeProcess, demo_rgb, lifecycle_state, ros_list, stamp_of, wait_ready,
                      wait_until)

pytestmark = pytest.mark.ros

TIMEOUT = 90.0



INVALID = [
    ({"device": "gpu"}, "device must be auto, cpu, cuda or cuda:N; got 'gpu'"),
    ({"image_qos.depth": "0"}, "image_qos.depth must be >= 1, got 0"),
    ({"labels_source": "42"}, "labels_source must be a string, got 42"),
    ({"detection_threshold": "0.5"}, "unknown parameter(s) detection_threshold"),
    ({"vocabulary_file": "/tmp/classes.txt"}, "set either vocabulary or vocabulary_file, not both"),
    ({"vocabulary": ros_list(["cat", "dog", "cat"])}, "class 2 repeats class 0"),
    ({"weights": "/nonexistent/weights.pth"}, "checkpoint not found: /nonexistent/weights.pth"),
    ({"model_config": "no_such_model"}, "no_such_model"),
    ({"weights": "''", "model_config": "fixture_tiny"}, "no weights for model 'fixture_tiny'"),
    # The tiny model's checkpoint given to another model: the error names the model it belongs to.
    ({"model_config": "fixture_rn_tiny"}, "its tensors fit the shipped model 'fixture_tiny'"),
]


@pytest.mark.parametrize("params,message", INVALID, ids=[next(iter(p)) + f"_{i}" for i, (p, _) in enumerate(INVALID)])
def test_invalid_parameters_fail_configure_with_a_clear_message(reference_root, tmp_path, peer, params,
                                                                 message) -> None:
    node = NodeProcess(reference_root, tmp_path, "/fcclip_test_invalid", params=params)
    check_configure_fails(peer, node, message)


def test_unparsable_command_line_exits_at_once(reference_root, tmp_path) -> None:
    node = NodeProcess(reference_root, tmp_path, "/fcclip_test_invalid", params={"weights": ""})  # `-p weights:=`
    try:
        assert node.wait(TIMEOUT) == 2
    finally:
        node.kill()
    assert "invalid command-line arguments" in node.stderr and "Traceback" not in node.output


def test_released_model_without_weights_names_the_command_that_gets_them(reference_root, tmp_path, peer) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FCCLIP_WEIGHTS"}
    env["FCCLIP_WEIGHTS_DIR"] = str(tmp_path / "empty_cache")
    node = NodeProcess(reference_root, tmp_path, "/fcclip_test_invalid", tiny_model=False, env=env,
                       params={"model_config": "convnext_large"})
    check_configure_fails(peer, node, "fcclip-weights download convnext_large")
    assert "allow_untrained:=true" in node.stderr


def test_a_params_file_with_wrong_types_fails_configure(reference_root, tmp_path, peer) -> None:
    # rcl drops a command-line override whose type differs from the params file's value, so
    # wrong types are checked the way users make them: in their own params file.
    params_file = tmp_path / "mine.yaml"
    params_file.write_text("/**:\n  ros__parameters:\n    publish_overlay: maybe\n    overlay_alpha: strong\n")
    node = NodeProcess(reference_root, tmp_path, "/fcclip_test_invalid", params_file=params_file)
    check_configure_fails(peer, node, "publish_overlay must be true or false, got 'maybe'")
    assert "overlay_alpha must be a number, got 'strong'" in node.stderr


def check_configure_fails(peer, node: NodeProcess, message: str) -> None:
    """The autostart configure fails with ``message``; the node stays up, unconfigured, and exits cleanly."""
    try:
        wait_until(lambda: "configure failed" in node.stderr or not node.alive(), TIMEOUT, "configure to fail")
        assert node.alive(), node.output
        assert message in node.stderr, node.stderr
        assert lifecycle_state(peer, node) == "unconfigured"
        assert node.stop(signal.SIGINT) == 0
    finally:
        node.kill()
    assert "Traceback" not in node.output, node.output


def test_sigint_while_the_model_loads_exits_cleanly(reference_root, tmp_path) -> None:
    node = NodeProcess(reference_root, tmp_path, "/fcclip_test_early_stop")
    try:
        wait_until(lambda: "loading model" in node.stderr or not node.alive(), TIMEOUT, "the model to start loading")
        assert node.stop(signal.SIGINT) == 0
    finally:
        node.kill()
    assert "Traceback" not in node.output, node.output
    assert "ready:" not in node.stderr


def test_sigint_while_a_vocabulary_is_encoded_exits_cleanly(reference_root, tmp_path, peer) -> None:
    namespace = "/fcclip_test_busy_stop"
    node = NodeProcess(reference_root, tmp_path, namespace, params={"max_classes": "1000"})
    client = peer.node.create_client(SetVocabulary, f"{node.fqn}/set_vocabulary")
    try:
        wait_ready(node, peer.node.create_publisher(Image, f"{namespace}/image", RELIABLE))
        assert client.wait_for_service(timeout_sec=TIMEOUT)
        client.call_async(SetVocabulary.Request(classes=[f"object number {i}" for i in range(1000)]))
        time.sleep(1.0)  # the node is now encoding 1000 classes (seconds on a CPU)
        assert node.stop(signal.SIGINT) == 0
    finally:
        peer.node.destroy_client(client)
        node.kill()
    assert "Traceback" not in node.output, node.output


def test_compressed_input_state_file_and_clean_exits(reference_root, tmp_path, peer) -> None:
    state_file = tmp_path / "state" / "vocabulary.yaml"
    params = {"image_transport": "compressed", "vocabulary_state_file": str(state_file), "labels_source": "semantic"}
    namespace = "/fcclip_test_lifecycle"
    compressed = peer.node.create_publisher(CompressedImage, f"{namespace}/image/compressed", RELIABLE)
    raw = peer.node.create_publisher(Image, f"{namespace}/image", RELIABLE)
    segments = peer.collect(SegmentArray, f"{namespace}/segment_node/segments")
    labels = peer.collect(Image, f"{namespace}/segment_node/labels")
    node = NodeProcess(reference_root, tmp_path / "first", namespace, params=params)
    try:
        wait_ready(node, compressed)
        assert raw.get_subscription_count() == 0, "with image_transport compressed the raw topic is not used"
        import cv2

        rgb = demo_rgb("chelsea.jpg", width=200)
        ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1])
        msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=byte_field(jpeg))
        msg.header.frame_id = "compressed_camera"
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp = peer.next_stamp()
        compressed.publish(msg)
        result = segments.for_stamp(stamp, TIMEOUT)
        assert result.header.frame_id == "compressed_camera"
        assert (result.height, result.width) == rgb.shape[:2]
        # labels_source semantic: every pixel gets its best class, none is left unlabelled.
        dense = np.frombuffer(labels.for_stamp(stamp_of(result), TIMEOUT).data, np.uint16)
        assert dense.size == result.height * result.width and dense.max() < 7

        new_classes, new_stuff = ["bicycle, bike", "road", "tree"], ["road"]
        reply = peer.call(SetVocabulary, f"{node.fqn}/set_vocabulary",
                          SetVocabulary.Request(classes=new_classes, stuff=new_stuff))
        assert reply.success, reply.message
        saved = yaml.safe_load(state_file.read_text())
        assert saved["classes"] == new_classes and saved["stuff"] == new_stuff
        assert saved["version"] == reply.version

        assert node.stop(signal.SIGTERM) == 0
        assert "Traceback" not in node.output, node.output
    finally:
        node.kill()

    # A restart keeps the vocabulary: the saved state wins over the `vocabulary` parameter.
    restarted = NodeProcess(reference_root, tmp_path / "second", namespace, params=params)
    try:
        wait_ready(restarted, compressed)
        vocabulary = peer.collect(Vocabulary, f"{namespace}/segment_node/vocabulary", LATCHED)
        current = vocabulary.wait_for(lambda m: True, TIMEOUT, "the restored vocabulary")
        assert list(current.labels) == ["bicycle", "road", "tree"]
        assert list(current.synonyms) == ["bicycle, bike", "road", "tree"]
        assert list(current.is_thing) == [True, False, True]
        assert restarted.stop(signal.SIGINT) == 0
        assert "Traceback" not in restarted.output, restarted.output
    finally:
        restarted.kill()
