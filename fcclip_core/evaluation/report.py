"""The evaluation report: JSON with every metric and the settings, and a printed table with the
paper's number beside ours."""
from __future__ import annotations

from typing import Any, Optional

from fcclip_core.evaluation.benchmarks import HEADLINE_METRIC

# Rows of the printed table: task, metric key path, label.
_TABLE_ROWS = (
    ("panoptic", ("All", "PQ"), "PQ"), ("panoptic", ("All", "SQ"), "SQ"), ("panoptic", ("All", "RQ"), "RQ"),
    ("panoptic", ("Things", "PQ"), "PQ things"), ("panoptic", ("Stuff", "PQ"), "PQ stuff"),
    ("instance", ("AP",), "AP"), ("instance", ("AP50",), "AP50"),
    ("semantic", ("mIoU",), "mIoU"), ("semantic", ("fwIoU",), "fwIoU"), ("semantic", ("mACC",), "mACC"),
    ("semantic", ("pACC",), "pACC"),
)


def build_report(dataset: Any, metrics: dict[str, dict], settings: dict, *, images: int, total_images: int,
                 seconds_per_image: Optional[float], predicted_now: int, vocabulary_seconds: float = 0.0) -> dict:
    """Everything a reader needs to trust or reproduce the numbers."""
    spec = dataset.spec
    complete = images == total_images
    official_size = settings.get("input_short_side") in (None, spec.min_size_test) and \
        settings.get("max_long_side") in (None, spec.max_size_test)
    comparable = complete and official_size and not settings.get("vocabulary") and spec.name != "custom"
    return {
        "dataset": spec.name,
        "description": spec.description,
        "images": images,
        "dataset_images": total_images,
        "complete": complete,
        "official_protocol": comparable,
        "note": None if comparable else "not comparable with the paper: " + ", ".join(
            reason for reason, applies in (("a subset of the images (--limit)", not complete),
                                           ("a non-official input size", not official_size),
                                           ("another vocabulary", bool(settings.get("vocabulary"))),
                                           ("custom data", spec.name == "custom")) if applies),
        "settings": settings,
        "seconds_per_image_median": seconds_per_image,
        "images_predicted_in_this_call": predicted_now,
        "vocabulary_seconds": vocabulary_seconds,  # text encoding of the class list in this call
        "paper": {HEADLINE_METRIC[t]: spec.paper[HEADLINE_METRIC[t]] for t in metrics if HEADLINE_METRIC[t] in spec.paper},
        "metrics": metrics,
    }


def format_table(report: dict) -> str:
    """The headline metrics as a text table: metric, ours, the paper's (where it has one)."""
    paper = report.get("paper", {})
    lines = [f"{report['dataset']}: {report['images']}/{report['dataset_images']} images", f"{'metric':<10} {'ours':>8} {'paper':>8}"]
    for task, path, label in _TABLE_ROWS:
        if task not in report["metrics"]:
            continue
        value: Any = report["metrics"][task]
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        reference = paper.get(label) if label in ("PQ", "AP", "mIoU") else None
        lines.append(f"{label:<10} {_cell(value):>8} {_cell(reference):>8}")
    if report.get("seconds_per_image_median") is not None:
        lines.append(f"time: {report['seconds_per_image_median']:.2f} s per image (median), "
                     f"class list encoded in {report.get('vocabulary_seconds', 0.0):.1f} s")
    if report.get("note"):
        lines.append(f"note: {report['note']}")
    return "\n".join(lines)


def _cell(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"
