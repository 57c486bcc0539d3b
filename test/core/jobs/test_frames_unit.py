"""Images and video frames as work units: files appear complete or not at all, and reruns skip done frames."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fcclip_core.jobs.frames_unit import segment_frames
from fcclip_core.jobs.predictor_spec import PredictorSpec
from fcclip_core.jobs.units import FramesUnit, run_unit
from fcclip_core.vocabulary import parse_vocabulary


@pytest.fixture(scope="module")
def predictor(reference_root):
    spec = PredictorSpec("fixture_tiny", reference_root / "tiny" / "weights.pth", input_short_side=64,
                         vocabulary=parse_vocabulary(["cat", "wall"], stuff=["wall"]))
    return spec.build()


def test_a_rerun_skips_finished_frames_and_redoes_unfinished_ones(predictor, tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    for k in range(5):
        writer.write(np.full((64, 96, 3), 50 * k, np.uint8))
    writer.release()
    out = tmp_path / "out"
    unit = FramesUnit(video, out, every=2, frames=3)
    progress = []
    first = segment_frames(predictor, unit, progress.append)
    assert (first.frames, first.resumed, first.image_outputs, sum(progress)) == (3, 0, 3, 3)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"clip_f{i:06d}_{kind}" for i in (0, 2, 4)
                           for kind in ("overlay.png", "panoptic.png", "segments.json")), "no staging folder is left"

    # An interruption after frame 2's images but before its JSON: frame 2 counts as not done.
    (out / "clip_f000002_segments.json").unlink()
    (out / "clip_f000002_overlay.png").write_bytes(b"half")
    second = run_unit(predictor, unit)
    assert (second.frames, second.resumed, second.image_outputs) == (1, 2, 3)
    assert cv2.imread(str(out / "clip_f000002_overlay.png")) is not None, "the half-written file was replaced"
