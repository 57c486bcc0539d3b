"""Mask AP through pycocotools, with hand-computed answers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fcclip_core.evaluation.instance_ap import encode_masks, score_coco_instances


def write_gt(path, masks_by_image, category_ids=(1, 2)):
    images, annotations = [], []
    for image_id, masks in masks_by_image.items():
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "height": 10, "width": 10})
        for category, mask in masks:
            rle = encode_masks(mask[None])[0]
            ys, xs = np.nonzero(mask)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "segmentation": rle, "area": int(mask.sum()), "iscrowd": 0,
                                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]})
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": c, "name": f"c{c}"} for c in category_ids]}))


def box(y0, y1, x0, x1):
    mask = np.zeros((10, 10), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def entry(image_id, category, mask, score):
    return {"image_id": image_id, "category_id": category, "segmentation": encode_masks(mask[None])[0], "score": score}


def test_perfect_masks_and_a_lower_ranked_false_positive_give_ap_100(tmp_path):
    write_gt(tmp_path / "gt.json", {1: [(1, box(0, 5, 0, 10))]})
    results = [entry(1, 1, box(0, 5, 0, 10), 0.9), entry(1, 1, box(6, 10, 0, 10), 0.2)]
    metrics = score_coco_instances(tmp_path / "gt.json", results)
    assert metrics["AP"] == pytest.approx(100.0) and metrics["AP50"] == pytest.approx(100.0)
    assert metrics["APs"] == pytest.approx(100.0)  # 50 px: a small object
    assert metrics["APm"] is None and metrics["APl"] is None  # no medium or large objects
    assert metrics["per_class"] == {"c1": pytest.approx(100.0), "c2": None}


def test_a_mask_with_iou_062_counts_at_three_of_ten_thresholds(tmp_path):
    write_gt(tmp_path / "gt.json", {1: [(1, box(0, 5, 0, 10))]})  # 50 px
    inside = box(0, 5, 0, 10)
    inside.ravel()[np.flatnonzero(inside)[31:]] = False  # 31 of the 50 px: IoU 0.62
    metrics = score_coco_instances(tmp_path / "gt.json", [entry(1, 1, inside, 0.8)])
    assert metrics["AP50"] == pytest.approx(100.0) and metrics["AP75"] == pytest.approx(0.0)
    assert metrics["AP"] == pytest.approx(30.0)  # thresholds 0.50, 0.55, 0.60


def test_a_higher_ranked_false_positive_halves_precision(tmp_path):
    write_gt(tmp_path / "gt.json", {1: [(1, box(0, 5, 0, 10))], 2: [(1, box(0, 5, 0, 10))]})
    results = [entry(1, 1, box(6, 10, 0, 10), 0.95), entry(1, 1, box(0, 5, 0, 10), 0.9),
               entry(2, 1, box(0, 5, 0, 10), 0.5)]
    metrics = score_coco_instances(tmp_path / "gt.json", results)
    # ranked: FP, TP, TP -> precision at recall 0.5 and 1.0 is 2/3 after COCO's interpolation.
    assert metrics["AP"] == pytest.approx(100 * 2 / 3, abs=0.01)
    only_second = score_coco_instances(tmp_path / "gt.json", results[2:], image_ids=[2])
    assert only_second["AP"] == pytest.approx(100.0) and only_second["images"] == 1


def test_bad_predictions_are_refused(tmp_path):
    write_gt(tmp_path / "gt.json", {1: [(1, box(0, 5, 0, 10))]})
    with pytest.raises(ValueError, match="category 9"):
        score_coco_instances(tmp_path / "gt.json", [entry(1, 9, box(0, 5, 0, 10), 0.9)])
    with pytest.raises(ValueError, match="image 4"):
        score_coco_instances(tmp_path / "gt.json", [entry(4, 1, box(0, 5, 0, 10), 0.9)])
    empty = score_coco_instances(tmp_path / "gt.json", [])
    assert empty["AP"] is None and empty["detections"] == 0
