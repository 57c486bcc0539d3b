"""Images and videos as work units: the classic ``fcclip-segment`` outputs, written atomically.

Every frame's files are written into a hidden staging folder and renamed into place, the JSON
last; a frame whose JSON exists is complete, so a rerun after an interruption continues with the
first frame that has none. A video's segments get persistent track ids from one tracker per
video; the tracker's state is not saved, so after a resume the ids start anew from the first
frame segmented again.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from fcclip_core.jobs.report import UnitReport
from fcclip_core.jobs.units import FramesUnit, ProgressCallback


def done_marker(output_dir: Path, name: str) -> Path:
    """The file whose presence means frame ``name`` is complete (written last)."""
    return output_dir / f"{name}_segments.json"


def segment_frames(predictor: Any, unit: FramesUnit, progress: ProgressCallback) -> UnitReport:
    """Segment every sampled frame of ``unit.source`` that has no complete outputs yet."""
    from fcclip_core.tools.segment import iter_frames, write_outputs

    report = UnitReport()
    unit.output_dir.mkdir(parents=True, exist_ok=True)
    staging = unit.output_dir / f".staging-{unit.source.name}"
    tracker = None
    if unit.track:
        from fcclip_core.spatial.tracker import SegmentTracker

        tracker = SegmentTracker()
    for name, rgb, video in iter_frames([unit.source], unit.every, unit.max_frames):
        if done_marker(unit.output_dir, name).exists():
            report.resumed += 1
            progress(1)
            continue
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        started = time.perf_counter()
        result = predictor.predict(rgb)
        report.add_result(result, time.perf_counter() - started)
        track_ids = tracker.update_result(result).track_of_segment if tracker is not None and video else None
        written = write_outputs(result, rgb, name, staging, track_ids)
        for path in sorted(written, key=lambda p: p.suffix == ".json"):  # the JSON marks completion: last
            path.replace(unit.output_dir / path.name)
        progress(1)
    report.image_outputs = report.frames + report.resumed
    shutil.rmtree(staging, ignore_errors=True)
    return report
