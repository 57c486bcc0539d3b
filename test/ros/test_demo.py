"""The README's demo end to end: fcclip-demo runs the node on the bundled photos and writes results.

Without released weights it runs the tiny untrained model and must say so plainly.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from .harness import DEMO_IMAGES

pytestmark = pytest.mark.ros

DEMO_SCRIPT = Path(sys.executable).parent / "fcclip-demo"


def test_demo_writes_overlays_labels_and_segments_and_says_untrained(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FCCLIP_WEIGHTS"}
    env["FCCLIP_WEIGHTS_DIR"] = str(tmp_path / "empty_cache")  # no released weights here
    output = tmp_path / "demo"
    run = subprocess.run([str(DEMO_SCRIPT), "--output", str(output), "--device", "cpu", "--timeout", "400"],
                         capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "UNTRAINED" in run.stdout and "NOT segmentation results" in run.stdout
    assert f"wrote 4 of 4 frames to {output}" in run.stdout
    assert "Traceback" not in run.stderr
    photos = sorted(p.name for p in DEMO_IMAGES.glob("*.jpg"))
    records = [json.loads(p.read_text()) for p in sorted(output.glob("*_segments.json"))]
    assert sorted(r["image"] for r in records) == photos
    for record in records:
        stem = next(output.glob(f"*_{Path(record['image']).stem}_segments.json")).name[:-len("_segments.json")]
        photo = cv2.imread(str(DEMO_IMAGES / record["image"]))
        overlay = cv2.imread(str(output / f"{stem}_overlay.png"))
        labels = cv2.imread(str(output / f"{stem}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert overlay.shape == photo.shape and labels.shape == photo.shape[:2] and labels.dtype == np.uint16
        assert (overlay[2, :, 2] == 200).mean() > 0.5, "overlays of an untrained model carry the red warning band"
        assert (record["height"], record["width"]) == photo.shape[:2]
        # Every labelled pixel belongs to a class of one of the frame's segments, with their total area.
        classes = {s["class_id"] for s in record["segments"]}
        assert set(np.unique(labels).tolist()) - {65535} <= classes
        assert int((labels != 65535).sum()) == sum(s["area"] for s in record["segments"])
