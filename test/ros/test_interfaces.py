"""The environment and our generated interfaces work across real processes over DDS on loopback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PEERS = Path(__file__).resolve().parent / "peers"

pytestmark = pytest.mark.ros


def test_image_segments_and_service_cross_processes() -> None:
    responder = subprocess.Popen(
        [sys.executable, str(PEERS / "interface_responder.py"), "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert responder.stdout.readline().strip() == "READY"
        requester = subprocess.run(
            [sys.executable, str(PEERS / "interface_requester.py"), "60"],
            capture_output=True, text=True, timeout=120)
        assert requester.returncode == 0, requester.stderr
        result = json.loads(requester.stdout.strip().splitlines()[-1])
        assert responder.wait(timeout=30) == 0, responder.stderr.read()
    finally:
        if responder.poll() is None:
            responder.kill()
            responder.wait()

    segments = result["segments"]
    # The header travelled image -> responder -> SegmentArray unchanged.
    assert segments["frame_id"] == "camera_optical"
    assert segments["stamp"] == [1234, 5678]
    assert segments["vocabulary_version"] == 7
    assert (segments["height"], segments["width"]) == (2, 3)
    # Fields the responder derived from the received image bytes: the payload arrived intact.
    assert segments["label"] == "rgb8"
    assert segments["area"] == sum(range(18))
    assert segments["bbox"] == [1, 2, 3, 2]
    assert segments["centroid"] == [9.0, 18.0]
    assert segments["class_id"] == 3 and segments["is_thing"] is True
    assert segments["score"] == pytest.approx(0.5)

    service = result["service"]
    assert service["success"] is True
    assert service["version"] == 8
    assert service["class_ids"] == [0, 1]
    assert service["labels"] == ["person", "floor"]
    assert service["message"] == "2 classes, stuff: floor"
