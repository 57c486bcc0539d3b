"""Mask AP with pycocotools, as detectron2's COCOEvaluator reports it (percent).

Predictions are COCO result entries: ``image_id``, ``category_id`` (the dataset's id),
``segmentation`` (RLE) and ``score``. Evaluation uses COCOeval with ``iouType="segm"`` and
its defaults (10 IoU thresholds 0.50:0.95, at most 100 detections per image).
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _pycocotools():
    """The COCO API modules (mask, COCO, COCOeval), or a clear error saying how to get them."""
    try:
        from pycocotools import mask
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise RuntimeError("mask AP and RLE masks need pycocotools: pip install pycocotools==2.0.11") from None
    return mask, COCO, COCOeval


def encode_masks(masks: np.ndarray) -> list[dict]:
    """RLE (JSON-ready: counts as str) of [N, H, W] boolean masks."""
    mask_utils, _, _ = _pycocotools()
    masks = np.asarray(masks, dtype=np.uint8)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got {masks.shape}")
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
    return [{"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")} for rle in encoded]


def score_coco_instances(gt_json: str | Path, predictions: str | Path | Sequence[dict], *,
                         image_ids: Iterable[int] | None = None) -> dict:
    """Mask AP of instance predictions (a results JSON file or a list of entries) on COCO-format GT."""
    _, COCO, COCOeval = _pycocotools()
    results = _load_results(predictions)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_json))
    known_images = set(coco_gt.getImgIds())
    wanted = sorted(set(image_ids)) if image_ids is not None else sorted(known_images)
    unknown = [i for i in wanted if i not in known_images]
    if unknown:
        raise ValueError(f"images {unknown[:3]} are not in {gt_json}")
    known_categories = set(coco_gt.getCatIds())
    for entry in results:
        if entry.get("category_id") not in known_categories:
            raise ValueError(f"a prediction has category {entry.get('category_id')!r}, not one of {gt_json}'s")
        if entry.get("image_id") not in known_images:
            raise ValueError(f"a prediction is for image {entry.get('image_id')!r}, not one of {gt_json}'s")
    names = {c["id"]: c["name"] for c in coco_gt.loadCats(sorted(known_categories))}
    if not results:
        # pycocotools cannot evaluate an empty result list; detectron2 reports nothing then.
        return {**{name: None for name in METRIC_NAMES}, "per_class": {}, "images": len(wanted), "detections": 0}
    entries = [{k: v for k, v in entry.items() if k != "bbox"} for entry in results]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(entries)
        evaluator = COCOeval(coco_gt, coco_dt, "segm")
        evaluator.params.imgIds = wanted
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    result: dict = {name: float(100 * stats[i]) if stats[i] >= 0 else None for i, name in enumerate(METRIC_NAMES)}
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, category in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[names[category]] = float(100 * values.mean()) if values.size else None
    result.update(per_class=per_class, images=len(wanted), detections=len(entries))
    return result


def _load_results(predictions: str | Path | Sequence[dict]) -> list[dict]:
    if isinstance(predictions, (str, Path)):
        try:
            data = json.loads(Path(predictions).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"file not found: {predictions}") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{predictions} is not valid JSON: {error}") from None
    else:
        data = list(predictions)
    if not isinstance(data, list):
        raise ValueError("instance predictions must be a JSON list of COCO result entries")
    return data
