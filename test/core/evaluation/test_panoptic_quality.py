"""PQ with the panopticapi rules: hand-computed answers for each rule, and agreement with an
independent per-segment computation on random panoptic maps."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fcclip_core.evaluation.label_files import write_panoptic_png
from fcclip_core.evaluation.panoptic_quality import PanopticQuality, score_coco_panoptic

THING, STUFF, EMPTY = 1, 2, 3
CATEGORIES = {THING: True, STUFF: False, EMPTY: True}


def segments(id_map: np.ndarray, categories: dict[int, int], crowd: tuple[int, ...] = ()) -> list[dict]:
    return [{"id": i, "category_id": c, "iscrowd": int(i in crowd), "area": int((id_map == i).sum())}
            for i, c in categories.items()]


def paint(shape: tuple[int, int], regions: dict[int, int], start: int = 0) -> np.ndarray:
    """A flat map filled in raster order: ``regions`` = {segment id: pixel count}, the rest 0."""
    flat = np.zeros(shape[0] * shape[1], dtype=np.int64)
    for segment_id, count in regions.items():
        flat[start:start + count] = segment_id
        start += count
    return flat.reshape(shape)


def one_image(gt, gt_segs, pred, pred_segs) -> dict:
    quality = PanopticQuality(CATEGORIES)
    quality.add(gt, gt_segs, pred, pred_segs)
    return quality.metrics()


def test_iou_of_exactly_one_half_is_not_a_match_and_just_above_is():
    gt = paint((1, 40), {1: 20})  # thing segment of 20 px, 20 px void
    half = paint((1, 40), {5: 10})  # 10 px inside: IoU 10/20 = 0.5
    result = one_image(gt, segments(gt, {1: THING}), half, segments(half, {5: THING}))
    assert result["per_class"]["1"] == {"PQ": 0.0, "SQ": None, "RQ": 0.0, "TP": 0, "FP": 1, "FN": 1}
    above = paint((1, 40), {5: 11})  # IoU 0.55
    result = one_image(gt, segments(gt, {1: THING}), above, segments(above, {5: THING}))
    assert result["All"]["PQ"] == pytest.approx(55.0)
    assert result["All"]["SQ"] == pytest.approx(55.0) and result["All"]["RQ"] == pytest.approx(100.0)
    assert result["All"]["n"] == 1  # the stuff and the empty class never occur: not averaged


def test_predicted_pixels_on_void_leave_the_union():
    gt = paint((1, 100), {1: 20})  # pixels 20..99 are void
    pred = paint((1, 100), {5: 42}, start=8)  # 12 px on the segment, 30 px on void
    result = one_image(gt, segments(gt, {1: THING}), pred, segments(pred, {5: THING}))
    # IoU = 12 / (42 + 20 - 12 - 30) = 0.6 (without the void rule it would be 12/50: no match)
    assert result["per_class"]["1"]["TP"] == 1
    assert result["All"]["PQ"] == pytest.approx(60.0)


def test_unmatched_prediction_mostly_on_void_is_no_false_positive():
    gt = paint((1, 30), {1: 20})  # stuff segment; 10 px void at the end
    pred_void = np.zeros((1, 30), np.int64)
    pred_void[0, 14:24] = 7  # 6 px on the segment, 4 px void: void share 0.4 -> FP
    result = one_image(gt, segments(gt, {1: STUFF}), pred_void, segments(pred_void, {7: THING}))
    assert result["per_class"]["1"]["FP"] == 1
    pred_void[0, 14:24] = 0
    pred_void[0, 19:29] = 7  # 1 px on the segment, 9 px void: share 0.9 -> ignored
    result = one_image(gt, segments(gt, {1: STUFF}), pred_void, segments(pred_void, {7: THING}))
    assert result["per_class"]["1"]["FP"] == 0
    pred_void[0, 19:29] = 0
    pred_void[0, 15:25] = 7  # 5 px on, 5 px void: share exactly 0.5 is not > 0.5 -> FP
    result = one_image(gt, segments(gt, {1: STUFF}), pred_void, segments(pred_void, {7: THING}))
    assert result["per_class"]["1"]["FP"] == 1
    # the stuff segment was missed each time
    assert result["per_class"]["2"]["FN"] == 1


def test_crowd_regions_are_neither_missed_nor_matched_and_cover_their_own_category_only():
    gt = paint((1, 40), {1: 20, 2: 20})  # segment 1: a crowd of things, 2: stuff
    gt_segs = segments(gt, {1: THING, 2: STUFF}, crowd=(1,))
    pred = np.zeros((1, 40), np.int64)
    pred[0, 0:20] = 5  # covers the crowd exactly
    pred[0, 20:40] = 6  # the stuff exactly
    result = one_image(gt, gt_segs, pred, segments(pred, {5: THING, 6: STUFF}))
    assert result["per_class"]["1"] == {"PQ": None, "SQ": None, "RQ": None, "TP": 0, "FP": 0, "FN": 0}
    assert result["per_class"]["2"]["TP"] == 1
    assert result["All"]["PQ"] == pytest.approx(100.0) and result["All"]["n"] == 1
    assert result["Things"]["n"] == 0 and result["Things"]["PQ"] is None
    # A prediction of another category on the crowd is a false positive of that category.
    result = one_image(gt, gt_segs, pred, segments(pred, {5: EMPTY, 6: STUFF}))
    assert result["per_class"]["3"]["FP"] == 1
    assert result["All"]["PQ"] == pytest.approx(50.0)  # stuff 100, category 3: 0


def test_averages_per_category_over_images_then_over_categories():
    quality = PanopticQuality(CATEGORIES)
    gt = paint((1, 20), {1: 10, 2: 10})
    quality.add(gt, segments(gt, {1: THING, 2: STUFF}), gt, segments(gt, {1: THING, 2: STUFF}))
    pred = paint((1, 20), {1: 8})  # thing IoU 0.8; stuff missed
    quality.add(gt, segments(gt, {1: THING, 2: STUFF}), pred, segments(pred, {1: THING}))
    result = quality.metrics()
    # thing: TP 2, IoU sum 1.8 -> PQ 0.9; stuff: TP 1, FN 1 -> PQ 1 / 1.5
    assert result["Things"]["PQ"] == pytest.approx(90.0)
    assert result["Stuff"]["PQ"] == pytest.approx(100 / 1.5)
    assert result["Stuff"]["SQ"] == pytest.approx(100.0) and result["Stuff"]["RQ"] == pytest.approx(100 / 1.5)
    assert result["All"]["PQ"] == pytest.approx((90.0 + 100 / 1.5) / 2)
    assert result["images"] == 2


def test_inconsistent_predictions_are_refused():
    gt = paint((1, 10), {1: 10})
    gt_segs = segments(gt, {1: STUFF})
    pred = paint((1, 10), {4: 10})
    with pytest.raises(ValueError, match="not in segments_info"):
        one_image(gt, gt_segs, pred, [])
    with pytest.raises(ValueError, match="no pixels"):
        one_image(gt, gt_segs, pred, segments(pred, {4: STUFF}) + [{"id": 9, "category_id": STUFF}])
    with pytest.raises(ValueError, match="not a dataset category"):
        one_image(gt, gt_segs, pred, segments(pred, {4: 42}))
    with pytest.raises(ValueError, match="differ in size"):
        one_image(gt, gt_segs, pred[:, :5], segments(pred[:, :5], {4: STUFF}))


def reference_pq(images, categories) -> dict[int, list[float]]:
    """Independent computation: boolean masks per segment, every GT x prediction pair compared."""
    stats = {c: [0.0, 0, 0, 0] for c in categories}
    for gt, gt_segs, pred, pred_segs in images:
        void = gt == 0
        matched_pred = set()
        for g in gt_segs:
            g_mask = gt == g["id"]
            if g["iscrowd"]:
                continue
            found = False
            for p in pred_segs:
                if p["category_id"] != g["category_id"]:
                    continue
                p_mask = pred == p["id"]
                inter = np.logical_and(g_mask, p_mask).sum()
                union = np.logical_or(g_mask, np.logical_and(p_mask, ~void)).sum()
                if inter / union > 0.5:
                    stats[g["category_id"]][0] += inter / union
                    stats[g["category_id"]][1] += 1
                    matched_pred.add(p["id"])
                    found = True
            if not found:
                stats[g["category_id"]][3] += 1
        for p in pred_segs:
            if p["id"] in matched_pred:
                continue
            p_mask = pred == p["id"]
            ignored = np.logical_and(p_mask, void)
            for g in gt_segs:
                if g["iscrowd"] and g["category_id"] == p["category_id"]:
                    ignored |= np.logical_and(p_mask, gt == g["id"])
            if ignored.sum() / p_mask.sum() <= 0.5:
                stats[p["category_id"]][2] += 1
    return stats


def random_panoptic(rng, shape, categories, crowd_share=0.15):
    """A random blocky panoptic map (segments of random categories), some crowd, some void."""
    coarse = rng.integers(0, 7, size=(shape[0] // 4, shape[1] // 4))
    id_map = np.kron(coarse, np.ones((4, 4), dtype=np.int64))
    id_map[rng.random(shape) < 0.03] = 0  # scattered void pixels
    ids = sorted(set(np.unique(id_map).tolist()) - {0})
    cats = {i: int(rng.choice(categories)) for i in ids}
    crowd = tuple(i for i in ids if rng.random() < crowd_share)
    return id_map, segments(id_map, cats, crowd)


def test_agrees_with_an_independent_per_segment_computation():
    rng = np.random.default_rng(7)
    categories = {10: True, 11: True, 12: False, 13: False}
    images = []
    for _ in range(12):
        gt, gt_segs = random_panoptic(rng, (24, 32), list(categories))
        pred, pred_segs = random_panoptic(rng, (24, 32), list(categories), crowd_share=0)
        # Make some predictions good: copy a few GT segments with a little noise.
        for g in gt_segs[:3]:
            mask = (gt == g["id"]) & (rng.random(gt.shape) < 0.9)
            pred[mask] = 100 + g["id"]
        pred_ids = sorted(set(np.unique(pred).tolist()) - {0})
        cat_of = {p["id"]: p["category_id"] for p in pred_segs}
        cat_of.update({100 + g["id"]: g["category_id"] for g in gt_segs[:3]})
        pred_segs = [{"id": i, "category_id": cat_of[i]} for i in pred_ids]
        images.append((gt, gt_segs, pred, pred_segs))
    quality = PanopticQuality(categories)
    for image in images:
        quality.add(*image)
    expected = reference_pq(images, categories)
    assert sum(s[1] for s in expected.values()) > 5  # the data exercises matches
    for category, (iou, tp, fp, fn) in expected.items():
        got = quality.counts[category]
        assert (got.tp, got.fp, got.fn) == (tp, fp, fn)
        assert got.iou == pytest.approx(iou, abs=1e-12)


def test_scores_coco_panoptic_files(tmp_path):
    gt = paint((4, 5), {1: 8, 2: 12})
    pred = paint((4, 5), {3: 9, 4: 11})
    write_panoptic_png(tmp_path / "gt" / "a.png", gt)
    write_panoptic_png(tmp_path / "pred" / "a.png", pred)
    (tmp_path / "gt.json").write_text(json.dumps({
        "categories": [{"id": 1, "name": "cup", "isthing": 1}, {"id": 2, "name": "table", "isthing": 0}],
        "annotations": [{"image_id": 5, "file_name": "a.png", "segments_info": segments(gt, {1: 1, 2: 2})}]}))
    (tmp_path / "pred.json").write_text(json.dumps({
        "annotations": [{"image_id": 5, "file_name": "a.png", "segments_info": segments(pred, {3: 1, 4: 2})}]}))
    result = score_coco_panoptic(tmp_path / "gt.json", tmp_path / "gt", tmp_path / "pred.json", tmp_path / "pred")
    # cup: IoU 8/9; table: IoU 11/12
    assert result["per_class"]["cup"]["PQ"] == pytest.approx(800 / 9)
    assert result["All"]["PQ"] == pytest.approx((800 / 9 + 1100 / 12) / 2)
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match="no prediction for image 5"):
        score_coco_panoptic(tmp_path / "gt.json", tmp_path / "gt", tmp_path / "pred.json", tmp_path / "pred")
