"""What a job did: frames, segments per class, time per frame, what was skipped and why."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class UnitReport:
    """The outcome of one work unit (plain data: it travels back from Ray actors)."""

    frames: int = 0
    inference_s: float = 0.0
    segments_per_class: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # reason -> frames
    resumed: int = 0  # frames whose outputs an earlier run had already written
    image_outputs: int = 0  # frames with per-image output files (images, video frames), resumed included
    frames_with_3d: int = 0  # recordings with depth: frames that got 3D outputs
    without_3d: Counter = field(default_factory=Counter)  # reason -> frames written in 2D only

    def add_result(self, result: Any, seconds: float) -> None:
        """Count one segmented frame."""
        self.frames += 1
        self.inference_s += seconds
        if result.panoptic is not None:
            self.segments_per_class.update(s.label for s in result.panoptic.segments)

    def merge(self, other: "UnitReport") -> None:
        self.frames += other.frames
        self.inference_s += other.inference_s
        self.segments_per_class.update(other.segments_per_class)
        self.skipped.update(other.skipped)
        self.resumed += other.resumed
        self.image_outputs += other.image_outputs
        self.frames_with_3d += other.frames_with_3d
        self.without_3d.update(other.without_3d)


def format_summary(report: UnitReport, wall_s: float, failures: dict[str, str]) -> str:
    """The human summary printed at the end of a job."""
    rates = []
    if report.frames and wall_s > 0:
        rates.append(f"{report.frames / wall_s:.2f} frames/s including start-up")
    if report.frames:
        rates.append(f"{report.inference_s / report.frames:.3f} s per frame in the model")
    lines = [f"segmented {report.frames} frame(s) in {wall_s:.1f} s" + (f" ({', '.join(rates)})" if rates else "")]
    if report.resumed:
        lines.append(f"resumed: {report.resumed} frame(s) were already done by an earlier run")
    if report.segments_per_class:
        lines.append("segments per class: " + ", ".join(
            f"{label} {count}" for label, count in sorted(report.segments_per_class.items(), key=lambda kv: (-kv[1], kv[0]))))
    if report.frames_with_3d or report.without_3d:
        lines.append(f"3D: {report.frames_with_3d} frame(s) with depth, "
                     f"{sum(report.without_3d.values())} in 2D only")
    for reason, count in sorted(report.without_3d.items()):
        lines.append(f"2D only, {count} frame(s): {reason}")
    for reason, count in sorted(report.skipped.items()):
        lines.append(f"skipped {count} frame(s): {reason}")
    for source, message in failures.items():
        lines.append(f"FAILED {source}: {message}")
    return "\n".join(lines)
