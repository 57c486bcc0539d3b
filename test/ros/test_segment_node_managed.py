"""The node as a managed (lifecycle) node in a real process: transitions driven from outside,
services answering while the model loads, cleanup releasing memory, run-time parameters taking
effect on the next frame, read-only parameters refused."""
from __future__ import annotations

import signal
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from sensor_msgs.msg import Image

from fcclip_ros.msg import SegmentArray

from .harness import (RELIABLE, NodeProcess, change_state, demo_rgb, diagnostics_values, image_message,
                      lifecycle_state, node_status, wait_until)

pytestmark = pytest.mark.ros

TIMEOUT = 90.0


def diagnostics_of(collector, node: NodeProcess, predicate, what: str) -> dict[str, str]:
    """Values of the first diagnostics status of ``node`` that satisfies ``predicate(status)``."""
    def find():
        for array in collector.snapshot():
            status = node_status(array, node)
            if status is not None and predicate(status):
                return status
        return None

    status = wait_until(find, TIMEOUT, what)
    return {"message": status.message, **diagnostics_values(status)}


def send_frame(peer, publisher, rgb) -> tuple[int, int]:
    stamp = peer.next_stamp()
    publisher.publish(image_message(rgb, stamp, "managed_camera"))
    return stamp


def test_transitions_from_a_lifecycle_manager_and_cleanup_releasing_memory(reference_root, tmp_path, peer) -> None:
    ns = "/fcclip_test_managed"
    node = NodeProcess(reference_root, tmp_path, ns, params={"autostart": "false", "diagnostics_period": "0.2"})
    image = peer.node.create_publisher(Image, f"{ns}/image", RELIABLE)
    segments = peer.collect(SegmentArray, f"{node.fqn}/segments")
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    rgb = demo_rgb("rocket.jpg", width=160)
    try:
        assert lifecycle_state(peer, node, TIMEOUT) == "unconfigured"
        waiting = diagnostics_of(diagnostics, node, lambda s: "waiting for configure" in s.message, "unconfigured")
        assert waiting["lifecycle_state"] == "unconfigured"
        time.sleep(1.0)
        assert image.get_subscription_count() == 0, "an unconfigured node does not take frames"
        assert "loading model" not in node.stderr, "autostart false: nothing is loaded before configure"

        assert change_state(peer, node, "configure")
        assert lifecycle_state(peer, node) == "inactive"
        time.sleep(1.0)
        assert image.get_subscription_count() == 0, "an inactive node does not take frames"

        assert change_state(peer, node, "activate")
        wait_until(lambda: image.get_subscription_count() > 0, TIMEOUT, "the subscription of the active node")
        first = send_frame(peer, image, rgb)
        segments.for_stamp(first, TIMEOUT)
        loaded_mb = node.rss_mb()

        assert change_state(peer, node, "deactivate")
        assert lifecycle_state(peer, node) == "inactive"
        wait_until(lambda: image.get_subscription_count() == 0, TIMEOUT, "the subscription to go")
        ignored = send_frame(peer, image, rgb)
        time.sleep(2.0)
        assert all((m.header.stamp.sec, m.header.stamp.nanosec) != ignored for m in segments.snapshot())

        assert change_state(peer, node, "cleanup")
        assert lifecycle_state(peer, node) == "unconfigured"
        released_mb = node.rss_mb()
        # The tiny model's weights are 22 MB (float32); with its buffers and the text cache, cleanup
        # must give back at least that much to the operating system.
        assert loaded_mb - released_mb > 20, (loaded_mb, released_mb)

        # Configured again, it works again: cleanup released, it did not break anything.
        assert change_state(peer, node, "configure") and change_state(peer, node, "activate")
        wait_until(lambda: image.get_subscription_count() > 0, TIMEOUT, "the subscription after reactivation")
        again = send_frame(peer, image, rgb)
        segments.for_stamp(again, TIMEOUT)

        # shutdown from a lifecycle manager ends the process, cleanly.
        assert change_state(peer, node, "shutdown")
        assert node.wait(TIMEOUT) == 0
    finally:
        node.kill()
    assert "Traceback" not in node.output, node.output


def test_services_answer_while_the_model_loads(reference_root, tmp_path, peer) -> None:
    # A large initial vocabulary makes configure slow for real: encoding its 3000 names takes seconds.
    classes = [f"object number {i}, item number {i}, thing number {i}" for i in range(1000)]
    vocabulary_file = tmp_path / "many.txt"
    vocabulary_file.write_text("\n".join(classes) + "\n")
    ns = "/fcclip_test_slow_load"
    node = NodeProcess(reference_root, tmp_path, ns, params={
        "diagnostics_period": "0.1", "vocabulary_file": str(vocabulary_file)},
        test_vocabulary=False)
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    try:
        loading = diagnostics_of(diagnostics, node, lambda s: s.message.startswith("loading: step 3/3"),
                                 "diagnostics saying the vocabulary is being encoded")
        assert "encoding the initial vocabulary (1000 classes" in loading["message"]
        assert loading["lifecycle_state"] == "configuring" and loading["loading_step"] == "3/3"
        started = time.monotonic()
        assert lifecycle_state(peer, node) == "configuring"
        reply = peer.call(GetParameters, f"{node.fqn}/get_parameters", GetParameters.Request(names=["vocabulary_file"]))
        assert reply.values[0].string_value == str(vocabulary_file)
        assert time.monotonic() - started < 5.0, "the services answered at once, not after the load"
        assert "ready:" not in node.stderr, "the load was still running while they answered"
        assert node.stop(signal.SIGINT) == 0
    finally:
        node.kill()
    assert "Traceback" not in node.output, node.output


def parameter(name: str, value) -> ParameterMsg:
    if isinstance(value, bool):
        return ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value))
    if isinstance(value, float):
        return ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))
    return ParameterMsg(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))


def test_run_time_parameters_take_effect_on_the_next_frame(reference_root, tmp_path, peer) -> None:
    ns = "/fcclip_test_tuning"
    node = NodeProcess(reference_root, tmp_path, ns, params={"diagnostics_period": "0.2"})
    image = peer.node.create_publisher(Image, f"{ns}/image", RELIABLE)
    segments = peer.collect(SegmentArray, f"{node.fqn}/segments")
    segment_ids = peer.collect(Image, f"{node.fqn}/segment_ids")
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    rgb = demo_rgb("coffee.jpg", width=160)

    def set_parameters(*parameters: ParameterMsg) -> list:
        reply = peer.call(SetParameters, f"{node.fqn}/set_parameters", SetParameters.Request(parameters=parameters))
        return list(reply.results)

    try:
        wait_until(lambda: image.get_subscription_count() > 0 or not node.alive(), TIMEOUT, "the node to activate")
        before = segments.for_stamp(send_frame(peer, image, rgb), TIMEOUT)
        assert len(before.segments) > 0

        # No class probability exceeds 1: the very next frame has no segments at all.
        assert all(r.successful for r in set_parameters(parameter("object_mask_threshold", 1.0),
                                                        parameter("publish_segment_ids", False)))
        stamp = send_frame(peer, image, rgb)
        assert segments.for_stamp(stamp, TIMEOUT).segments == []
        time.sleep(1.0)
        assert all((m.header.stamp.sec, m.header.stamp.nanosec) != stamp for m in segment_ids.snapshot()), \
            "publish_segment_ids false: that output stops from the next frame"
        shown = diagnostics_of(diagnostics, node, lambda s: diagnostics_values(s).get("object_mask_threshold") == "1.0",
                               "diagnostics reporting the new threshold")
        assert shown["publish_segment_ids"] == "False"

        # Back to the model's value (negative): segments again, identical to the first frame's.
        assert all(r.successful for r in set_parameters(parameter("object_mask_threshold", -1.0),
                                                        parameter("publish_segment_ids", True)))
        stamp = send_frame(peer, image, rgb)
        after = segments.for_stamp(stamp, TIMEOUT)
        assert [(s.class_id, s.area) for s in after.segments] == [(s.class_id, s.area) for s in before.segments]
        segment_ids.for_stamp(stamp, TIMEOUT)

        # Invalid values and parameters that cannot change are refused with the reason.
        bad_alpha, = set_parameters(parameter("overlay_alpha", 2.0))
        assert not bad_alpha.successful and "overlay_alpha must be <= 1" in bad_alpha.reason
        model, = set_parameters(parameter("model_config", "rn50"))
        assert not model.successful and "read-only" in model.reason
        classes, = set_parameters(ParameterMsg(name="vocabulary", value=ParameterValue(
            type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=["dog"])))
        assert not classes.successful and "use ~/set_vocabulary" in classes.reason
        assert node.stop(signal.SIGTERM) == 0
    finally:
        node.kill()
    assert "Traceback" not in node.output, node.output


def test_parameter_table_marks_what_changes_at_run_time() -> None:
    from fcclip_ros.node_config import RUNTIME_PARAMETERS

    assert set(RUNTIME_PARAMETERS) == {
        "cpu_threads", "input_short_side", "object_mask_threshold", "overlap_threshold", "ensemble_alpha",
        "ensemble_beta", "publish_labels", "publish_segment_ids", "publish_segments", "publish_detections",
        "publish_overlay", "labels_source", "overlay_alpha", "overlay_labels"}

