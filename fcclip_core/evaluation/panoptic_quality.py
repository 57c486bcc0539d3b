"""Panoptic quality (PQ = SQ x RQ) with the rules of the COCO panoptic API (panopticapi).

Per image, a predicted and a ground-truth segment of the same category match when their IoU
is strictly above 0.5, where the union leaves out the predicted pixels that fall on void
(unlabelled) ground truth. Crowd ground-truth segments are never matched and never count as
missed. An unmatched prediction is a false positive unless more than half of it lies on void
or on a crowd region of its own category. PQ, SQ and RQ are averaged over the categories that
occur (TP + FP + FN > 0), for all categories, things and stuff. Ground-truth areas come from
the annotation JSON, predicted areas from the PNG, as in panopticapi.

The panopticapi package is not on PyPI; this module is checked against hand-computed answers
and against an independent per-segment computation in the tests.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from fcclip_core.evaluation.label_files import read_panoptic_png

VOID = 0
OFFSET = 256 ** 3


@dataclass
class CategoryCounts:
    """Matched-IoU sum and TP / FP / FN counts of one category."""

    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0


class PanopticQuality:
    """Accumulates per-category PQ counts over images; ``categories`` maps category id -> isthing."""

    def __init__(self, categories: Mapping[int, bool]) -> None:
        if not categories:
            raise ValueError("PQ needs at least one category")
        self.categories = {int(k): bool(v) for k, v in categories.items()}
        self.counts = {k: CategoryCounts() for k in self.categories}
        self.images = 0

    def add(self, gt_ids: np.ndarray, gt_segments: Sequence[Mapping], pred_ids: np.ndarray,
            pred_segments: Sequence[Mapping]) -> None:
        """Count one image: segment-id maps of equal size and their ``segments_info`` lists."""
        gt_ids = np.asarray(gt_ids, dtype=np.int64)
        pred_ids = np.asarray(pred_ids, dtype=np.int64)
        if gt_ids.shape != pred_ids.shape:
            raise ValueError(f"prediction {pred_ids.shape} and ground truth {gt_ids.shape} differ in size")
        gt = {int(s["id"]): s for s in gt_segments}
        pred = {int(s["id"]): dict(s) for s in pred_segments}
        pred_area = self._checked_prediction_areas(pred_ids, pred)

        joint, overlap = np.unique(gt_ids * OFFSET + pred_ids, return_counts=True)
        intersections = {(int(j // OFFSET), int(j % OFFSET)): int(n) for j, n in zip(joint, overlap)}

        gt_matched: set[int] = set()
        pred_matched: set[int] = set()
        for (gt_id, pred_id), inter in intersections.items():
            if gt_id not in gt or pred_id not in pred:
                continue
            if gt[gt_id].get("iscrowd", 0) == 1 or gt[gt_id]["category_id"] != pred[pred_id]["category_id"]:
                continue
            union = pred_area[pred_id] + _gt_area(gt[gt_id], gt_ids) - inter - intersections.get((VOID, pred_id), 0)
            iou = inter / union
            if iou > 0.5:
                counts = self._category(gt[gt_id]["category_id"])
                counts.tp += 1
                counts.iou += iou
                gt_matched.add(gt_id)
                pred_matched.add(pred_id)

        crowd_by_category: dict[int, int] = {}
        for gt_id, segment in gt.items():
            if segment.get("iscrowd", 0) == 1:
                crowd_by_category[segment["category_id"]] = gt_id
                continue
            if gt_id not in gt_matched:
                self._category(segment["category_id"]).fn += 1
        for pred_id, segment in pred.items():
            if pred_id in pred_matched:
                continue
            on_ignored = intersections.get((VOID, pred_id), 0)
            crowd_id = crowd_by_category.get(segment["category_id"])
            if crowd_id is not None:
                on_ignored += intersections.get((crowd_id, pred_id), 0)
            if on_ignored / pred_area[pred_id] > 0.5:
                continue
            self.counts[segment["category_id"]].fp += 1
        self.images += 1

    def _category(self, category_id: int) -> CategoryCounts:
        if category_id not in self.counts:
            raise ValueError(f"ground-truth category {category_id} is not one of the dataset's categories")
        return self.counts[category_id]

    def _checked_prediction_areas(self, pred_ids: np.ndarray, pred: dict[int, dict]) -> dict[int, int]:
        labels, areas = np.unique(pred_ids, return_counts=True)
        area = {}
        for label, count in zip(labels.tolist(), areas.tolist()):
            if label not in pred:
                if label == VOID:
                    continue
                raise ValueError(f"predicted segment {label} is in the PNG but not in segments_info")
            if pred[label]["category_id"] not in self.categories:
                raise ValueError(f"predicted segment {label} has category {pred[label]['category_id']}, "
                                 "which is not a dataset category")
            area[label] = count
        absent = sorted(set(pred) - set(area))
        if absent:
            raise ValueError(f"predicted segments {absent[:5]} are in segments_info but have no pixels in the PNG")
        return area

    def metrics(self, category_names: Mapping[int, str] | None = None) -> dict:
        """PQ / SQ / RQ (percent) and the number of categories averaged, for All, Things, Stuff."""
        result: dict = {}
        for group, keep in (("All", None), ("Things", True), ("Stuff", False)):
            pq = sq = rq = 0.0
            n = 0
            for category, isthing in self.categories.items():
                if keep is not None and isthing != keep:
                    continue
                c = self.counts[category]
                if c.tp + c.fp + c.fn == 0:
                    continue
                n += 1
                denominator = c.tp + 0.5 * c.fp + 0.5 * c.fn
                pq += c.iou / denominator
                sq += c.iou / c.tp if c.tp else 0.0
                rq += c.tp / denominator
            result[group] = {"PQ": 100 * pq / n if n else None, "SQ": 100 * sq / n if n else None,
                             "RQ": 100 * rq / n if n else None, "n": n}
        names = category_names or {}
        result["per_class"] = {names.get(k, str(k)): _class_entry(self.counts[k]) for k in self.categories}
        result["images"] = self.images
        return result


def _class_entry(c: CategoryCounts) -> dict:
    denominator = c.tp + 0.5 * c.fp + 0.5 * c.fn
    return {"PQ": 100 * c.iou / denominator if denominator else None,
            "SQ": 100 * c.iou / c.tp if c.tp else None,
            "RQ": 100 * c.tp / denominator if denominator else None,
            "TP": c.tp, "FP": c.fp, "FN": c.fn}


def _gt_area(segment: Mapping, gt_ids: np.ndarray) -> int:
    """The annotation's area (panopticapi uses the JSON value); counted from the PNG when absent."""
    if "area" in segment:
        return int(segment["area"])
    return int((gt_ids == int(segment["id"])).sum())


def score_coco_panoptic(gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path, pred_dir: str | Path,
                        *, image_ids: Iterable | None = None) -> dict:
    """PQ of COCO-panoptic predictions (JSON + PNG folder) against COCO-panoptic ground truth.

    Every ground-truth image needs a prediction (as panopticapi demands) unless ``image_ids``
    names the images to score.
    """
    gt_doc = _read_json(gt_json)
    pred_doc = _read_json(pred_json)
    categories = {int(c["id"]): bool(c.get("isthing", 1)) for c in gt_doc.get("categories", [])}
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in gt_doc.get("categories", [])}
    predictions = {ann["image_id"]: ann for ann in pred_doc.get("annotations", [])}
    annotations = gt_doc.get("annotations", [])
    if image_ids is not None:
        wanted = set(image_ids)
        annotations = [ann for ann in annotations if ann["image_id"] in wanted]
        unknown = wanted - {ann["image_id"] for ann in annotations}
        if unknown:
            raise ValueError(f"images {sorted(map(str, unknown))[:3]} are not in {gt_json}")
    if not annotations:
        raise ValueError(f"no ground-truth annotations to score in {gt_json}")
    quality = PanopticQuality(categories)
    for ann in annotations:
        pred = predictions.get(ann["image_id"])
        if pred is None:
            raise ValueError(f"no prediction for image {ann['image_id']!r} in {pred_json}")
        quality.add(read_panoptic_png(Path(gt_dir) / ann["file_name"]), ann["segments_info"],
                    read_panoptic_png(Path(pred_dir) / pred["file_name"]), pred["segments_info"])
    return quality.metrics(names)


def _read_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
