"""Post-processing parity: the official fixtures, and the lean path against the official formulas."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcclip_core.postprocess import (BandResizer, PostprocessConfig, instance_inference,
                                     mask_logits_to_image, panoptic_inference, postprocess)
from fcclip_core.tools.reference_postprocess import (reference_instance_inference,
                                                     reference_panoptic_inference,
                                                     reference_semantic_inference)
from fcclip_core.results import boxes_from_masks, region_stats

FIXTURES = [("tiny", 0), ("tiny", 1), ("rn_tiny", 0), ("rn_tiny", 1)]
TINY_CHUNK = 60_000  # bytes: smallest chunks (4 queries) and bands (8 rows) on the fixtures
# A few float32 ulps of a probability: softmax's vectorised exp differs in the last bit between
# CPU instruction sets (the fixtures were recorded on another machine); decisions never do.
FLOAT32_ROUNDING = 1e-6


# --------------------------------------------------------------------------- fixture helpers

_CACHE: dict[tuple[Path, str], dict] = {}


def load_fixture(root: Path, name: str, index: int) -> dict:
    key = (root, name)
    if key not in _CACHE:
        expected = torch.load(root / name / "expected.pt", weights_only=(name == "tiny"))
        vocab = json.loads((root / name / "vocab.json").read_text())
        fragility = json.loads((root / name / "fragility.json").read_text())
        _CACHE[key] = {"expected": expected, "vocab": vocab, "fragility": fragility}
    data = _CACHE[key]
    image = data["expected"]["images"][index]
    return {
        "image": image,
        "logprobs": image["mask_cls_final_logprobs"],
        "low": image["decoder"]["pred_masks"][0],
        "geometry": (tuple(image["padded_hw"]), tuple(image["model_input_hw"]),
                     tuple(image["orig_hw"])),
        "things": list(data["vocab"]["isthing"]),
        "labels": [c.split(",")[0].strip() for c in data["vocab"]["stuff_classes"]],
        "fragility": data["fragility"][index],
    }


def panoptic_fragile_pixels(logprobs: torch.Tensor, full: torch.Tensor, things) -> torch.Tensor:
    """Pixels where the official panoptic map may flip under float noise (fragility.json's
    criteria: top-2 relative gap of score * sigmoid < 1e-5, or the owner's |sigmoid - 0.5| < 1e-5)."""
    scores, classes = F.softmax(logprobs, -1).max(-1)
    keep = classes.ne(logprobs.shape[-1] - 1) & (scores > 0)
    sig = full[keep].sigmoid()
    prob = scores[keep].view(-1, 1, 1) * sig
    top2 = prob.topk(min(2, prob.shape[0]), dim=0).values
    gap = (top2[0] - top2[-1]) / top2[0].clamp(min=1e-30) if prob.shape[0] > 1 else torch.ones_like(top2[0])
    owner_sig = sig.gather(0, prob.argmax(0, keepdim=True))[0]
    return (gap < 1e-5) | ((owner_sig - 0.5).abs() < 1e-5)


def instance_dict(query_index, classes, scores, masks) -> dict:
    return {(int(q), int(c)): (float(s), np.asarray(m))
            for q, c, s, m in zip(query_index, classes, scores, masks)}


def assert_same_instances(mine: dict, ref: dict, score_tol: float, logits: torch.Tensor,
                          mask_tol: float = 0.0) -> None:
    assert mine.keys() == ref.keys()
    for (q, c), (score, mask) in ref.items():
        assert abs(mine[(q, c)][0] - score) <= score_tol, (q, c)
        differ = mine[(q, c)][1] != mask
        if differ.any():  # only where the logit sits on the binarisation threshold
            assert (logits[q].abs().numpy()[differ] < mask_tol).all(), (q, c)


def assert_semantic_labels_match(labels: np.ndarray, sem_ref: torch.Tensor) -> None:
    """Identical argmax except where the official top-2 scores are within float noise."""
    top2 = sem_ref.topk(2, dim=0).values
    near_tie = ((top2[0] - top2[1]) / top2[0].abs().clamp(min=1e-12) < 1e-5).numpy()
    differ = labels != sem_ref.argmax(0).numpy()
    assert not (differ & ~near_tie).any()


# --------------------------------------------------------------------------- official fixtures

@pytest.mark.parametrize("name,index", FIXTURES)
def test_resize_chain_matches_official(reference_root, name, index):
    fx = load_fixture(reference_root, name, index)
    full = mask_logits_to_image(fx["low"], *fx["geometry"])
    assert full.shape == fx["image"]["mask_pred_final"].shape
    assert (full - fx["image"]["mask_pred_final"]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name,index", FIXTURES)
def test_band_resizer_matches_full_resize(reference_root, name, index):
    fx = load_fixture(reference_root, name, index)
    full = mask_logits_to_image(fx["low"], *fx["geometry"])
    bands = BandResizer(fx["low"], *fx["geometry"])
    height = full.shape[1]
    for rows in (3, 7, height):
        got = torch.cat([bands.rows(r, min(height, r + rows)) for r in range(0, height, rows)], 1)
        assert ((got - full).abs() <= 1e-6 * full.abs().clamp(min=1)).all()


@pytest.mark.parametrize("name,index", FIXTURES)
def test_semantic_matches_official(reference_root, name, index):
    fx = load_fixture(reference_root, name, index)
    sem = reference_semantic_inference(fx["logprobs"], mask_logits_to_image(fx["low"], *fx["geometry"]))
    assert (sem - fx["image"]["sem_seg"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name,index", FIXTURES)
def test_panoptic_matches_official(reference_root, name, index):
    fx = load_fixture(reference_root, name, index)
    full = mask_logits_to_image(fx["low"], *fx["geometry"])
    result = panoptic_inference(fx["logprobs"], full, fx["things"], fx["labels"])
    expected = fx["image"]["panoptic_seg"].numpy()
    differ = result.segment_ids != expected
    fragile = panoptic_fragile_pixels(fx["logprobs"], full, fx["things"]).numpy()
    assert not (differ & ~fragile).any()
    assert differ.sum() <= fx["fragility"]["panoptic_pixels_argmax_relative_gap_lt_1e-5"] + \
        fx["fragility"]["kept_query_pixels_with_abs(sigmoid-0.5)_lt_1e-5"]
    assert [(s.id, s.isthing, s.category_id) for s in result.segments] == \
        [(d["id"], d["isthing"], d["category_id"]) for d in fx["image"]["segments_info"]]
    assert result.segment_ids.dtype == np.int32


@pytest.mark.parametrize("name,index", FIXTURES)
def test_panoptic_segment_fields(reference_root, name, index):
    fx = load_fixture(reference_root, name, index)
    full = mask_logits_to_image(fx["low"], *fx["geometry"])
    result = panoptic_inference(fx["logprobs"], full, fx["things"], fx["labels"])
    probs = F.softmax(fx["logprobs"], -1)
    assert result.segments
    for seg in result.segments:
        pixels = result.segment_ids == seg.id
        ys, xs = np.nonzero(pixels)
        assert seg.area == pixels.sum() > 0
        assert seg.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert seg.centroid == pytest.approx((xs.mean(), ys.mean()))
        assert seg.label == fx["labels"][seg.category_id]
        assert seg.isthing == fx["things"][seg.category_id]
        assert probs[seg.query_index].argmax().item() == seg.category_id
        assert seg.score == pytest.approx(probs[seg.query_index].max().item())


@pytest.mark.parametrize("name,index", FIXTURES)
def test_instances_match_official(reference_root, name, index):
    fx = load_fixture(reference_root, name, index)
    full = mask_logits_to_image(fx["low"], *fx["geometry"])
    result = instance_inference(fx["logprobs"], full, fx["things"], topk=100)
    ref = fx["image"]["instances"]
    assert_same_instances(
        instance_dict(result.query_indices, result.classes, result.scores, result.masks),
        instance_dict(ref["query_index"], ref["pred_classes"], ref["scores"], ref["pred_masks"]),
        1e-5, full, mask_tol=1e-4)
    assert np.all(np.diff(result.scores) <= 0)  # best first
    class_score = {(int(q), int(c)): float(s) for q, c, s in
                   zip(ref["query_index"], ref["pred_classes"], ref["class_score"])}
    for q, c, s in zip(result.query_indices, result.classes, result.class_scores):
        assert s == pytest.approx(class_score[(int(q), int(c))], abs=FLOAT32_ROUNDING)
    np.testing.assert_array_equal(result.boxes, boxes_from_masks(result.masks))


@pytest.mark.parametrize("name,index", FIXTURES)
@pytest.mark.parametrize("chunk_bytes", [PostprocessConfig.chunk_bytes, TINY_CHUNK])
def test_lean_postprocess_on_fixtures(reference_root, name, index, chunk_bytes):
    fx = load_fixture(reference_root, name, index)
    image = fx["image"]
    cfg = PostprocessConfig(chunk_bytes=chunk_bytes, keep_semantic_probs=True)
    sem, pan, inst = postprocess(fx["logprobs"], fx["low"], *fx["geometry"], fx["things"],
                                 fx["labels"], cfg)
    assert_semantic_labels_match(sem.labels, image["sem_seg"])
    np.testing.assert_allclose(sem.scores, image["sem_seg"].max(0).values.numpy(), atol=1e-5)
    np.testing.assert_allclose(sem.probs, image["sem_seg"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(pan.segment_ids, image["panoptic_seg"].numpy())
    assert [(s.id, s.isthing, s.category_id) for s in pan.segments] == \
        [(d["id"], d["isthing"], d["category_id"]) for d in image["segments_info"]]
    ref = image["instances"]
    assert_same_instances(
        instance_dict(inst.query_indices, inst.classes, inst.scores, inst.masks),
        instance_dict(ref["query_index"], ref["pred_classes"], ref["scores"], ref["pred_masks"]),
        1e-5, image["mask_pred_final"], mask_tol=1e-4)


def test_reference_ports_reproduce_fixture(reference_root):
    """The oracle used below is itself checked against the official outputs."""
    for name, index in FIXTURES:
        fx = load_fixture(reference_root, name, index)
        image = fx["image"]
        ids, segments = reference_panoptic_inference(fx["logprobs"], image["mask_pred_final"],
                                                     fx["things"])
        assert torch.equal(ids, image["panoptic_seg"])
        assert segments == image["segments_info"]
        inst = reference_instance_inference(fx["logprobs"], image["mask_pred_final"], fx["things"])
        ref = image["instances"]
        assert_same_instances(
            instance_dict(inst["query_index"], inst["pred_classes"], inst["scores"],
                          inst["pred_masks"].numpy()),
            instance_dict(ref["query_index"], ref["pred_classes"], ref["scores"],
                          ref["pred_masks"]), FLOAT32_ROUNDING, image["mask_pred_final"])


# --------------------------------------------------------------------------- random inputs

def random_inputs(seed: int, queries: int, classes: int, low_hw: tuple[int, int]):
    """Decoder-like outputs: confident queries on the cells of a random partition (cells of one
    stuff class merge, repeated cells are dropped by the area test), plus weak noisy queries and
    void ones, all with smooth logits."""
    g = torch.Generator().manual_seed(seed)
    h4, w4 = low_hw
    cells = 8
    seeds = torch.rand(cells, 2, generator=g) * torch.tensor([h4, w4])
    yy, xx = torch.meshgrid(torch.arange(h4), torch.arange(w4), indexing="ij")
    dist = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    cell = dist.argmin(0)
    coarse = torch.randn(1, queries, max(2, h4 // 6), max(2, w4 // 6), generator=g)
    noise = F.interpolate(coarse, size=low_hw, mode="bicubic", align_corners=False)[0]
    low = 8.0 * noise - 6.0  # weak, mostly negative masks
    logits = torch.randn(queries, classes + 1, generator=g)
    cell_class = torch.randint(0, classes, (cells,), generator=g)
    for q in range(min(queries, 2 * cells)):
        c = q % cells
        low[q] = torch.where(cell == c, 10.0, -10.0) + 3.0 * noise[q]
        logits[q, cell_class[c]] += 6.0 - q // cells  # repeats: a little less confident
    logits[2 * cells:, -1] += 3.0 * torch.rand(queries - 2 * cells, generator=g)  # void-ish rest
    logprobs = torch.log(F.softmax(logits, -1) + 1e-8)
    things = [c % 2 == 0 for c in range(classes)]
    return logprobs, low, things


GEOMETRIES = [  # (padded, resized, output): step 2 up, down, odd, identity, no padding
    ((160, 224), (150, 213), (150, 213)),
    ((192, 128), (181, 128), (170, 120)),
    ((96, 160), (90, 155), (233, 401)),
    ((320, 256), (301, 250), (111, 97)),
    ((128, 128), (128, 128), (257, 131)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_lean_postprocess_equals_official_formulas(geometry):
    padded, resized, output = geometry
    logprobs, low, things = random_inputs(sum(output), 50, 7, (padded[0] // 4, padded[1] // 4))
    labels = [f"c{i}" for i in range(7)]
    full = mask_logits_to_image(low, padded, resized, output)

    # lean path, forced into small query chunks and row bands
    cfg = PostprocessConfig(chunk_bytes=4 * output[0] * output[1] * 3, keep_semantic_probs=True)
    sem, pan, inst = postprocess(logprobs, low, padded, resized, output, things, labels, cfg)

    bands = BandResizer(low, padded, resized, output)
    got = torch.cat([bands.rows(r, min(output[0], r + 13)) for r in range(0, output[0], 13)], 1)
    assert ((got - full).abs() <= 1e-6 * full.abs().clamp(min=1)).all()

    sem_ref = reference_semantic_inference(logprobs, full)
    assert_semantic_labels_match(sem.labels, sem_ref)
    np.testing.assert_allclose(sem.probs, sem_ref.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sem.scores, sem_ref.max(0).values.numpy(), rtol=1e-5, atol=1e-6)

    ids, segments = reference_panoptic_inference(logprobs, full, things)
    np.testing.assert_array_equal(pan.segment_ids, ids.numpy())
    assert [(s.id, s.isthing, s.category_id) for s in pan.segments] == \
        [(d["id"], d["isthing"], d["category_id"]) for d in segments]
    assert len(segments) >= 2  # the inputs exercise the loop, not just the empty case

    ref = reference_instance_inference(logprobs, full, things, 100)
    assert_same_instances(
        instance_dict(inst.query_indices, inst.classes, inst.scores, inst.masks),
        instance_dict(ref["query_index"], ref["pred_classes"], ref["scores"],
                      ref["pred_masks"].numpy()), 1e-6, full)

    # the full-resolution entry points agree with the lean path
    pan_full = panoptic_inference(logprobs, full, things, labels, chunk_bytes=cfg.chunk_bytes)
    np.testing.assert_array_equal(pan_full.segment_ids, pan.segment_ids)
    assert pan_full.segments == pan.segments


def test_ties_go_to_the_first_query_across_chunks():
    """Integer-valued logits and equal scores make exact ties: chunking must not change owners."""
    g = torch.Generator().manual_seed(3)
    q, k = 12, 3
    full = torch.randint(-2, 3, (q, 40, 50), generator=g).float()
    logits = torch.full((q, k + 1), -10.0)
    logits[:, 0] = 5.0  # every query: class 0 (thing) with the same score
    logprobs = torch.log(F.softmax(logits, -1) + 1e-8)
    things = [True, False, True]
    ids, segments = reference_panoptic_inference(logprobs, full, things, overlap_threshold=0.0)
    for chunk_bytes in (1, 4 * 40 * 50 * 5, 1 << 30):
        pan = panoptic_inference(logprobs, full, things, ["a", "b", "c"], overlap_threshold=0.0,
                                 chunk_bytes=chunk_bytes)
        np.testing.assert_array_equal(pan.segment_ids, ids.numpy())
        assert [s.id for s in pan.segments] == [d["id"] for d in segments]


def test_panoptic_loop_semantics():
    """Void queries are skipped, covered queries dropped, stuff merges into its first segment."""
    h, w = 8, 10
    full = torch.full((6, h, w), -20.0)
    full[0, :, :5] = 20.0  # stuff class 1, left half         -> segment 1
    full[1, :2, :] = 20.0  # void                             -> ignored
    full[2, :, 5:] = 20.0  # thing class 0, right half        -> segment 2
    full[3, 6:, :5] = 30.0  # stuff class 1 again, bottom left  -> merged into segment 1
    full[4, :, :] = 1.0  # class 0, everywhere but beaten     -> dropped (ratio)
    full[5, :, :] = -20.0  # class 2, empty mask               -> skipped
    logits = torch.full((6, 4), -10.0)
    for query, cls in enumerate([1, 3, 0, 1, 0, 2]):
        logits[query, cls] = 10.0
    logprobs = torch.log(F.softmax(logits, -1) + 1e-8)
    things = [True, False, True]
    ids, segments = reference_panoptic_inference(logprobs, full, things)
    pan = panoptic_inference(logprobs, full, things, ["person", "road", "cup"], chunk_bytes=1)
    np.testing.assert_array_equal(pan.segment_ids, ids.numpy())
    assert [(s.id, s.category_id, s.isthing, s.query_index) for s in pan.segments] == \
        [(1, 1, False, 0), (2, 0, True, 2)]
    assert pan.segments[0].area == h * 5 and pan.segments[0].label == "road"
    assert pan.segment(2).bbox == (5, 0, 5, h)


def test_nothing_kept_gives_empty_results():
    logits = torch.full((4, 3), -10.0)
    logits[:, -1] = 10.0  # all void
    logprobs = torch.log(F.softmax(logits, -1) + 1e-8)
    low = torch.randn(4, 8, 8)
    sem, pan, inst = postprocess(logprobs, low, (32, 32), (30, 31), (60, 62), [True, False],
                                 ["a", "b"])
    assert pan.segments == [] and pan.segment_ids.shape == (60, 62) and not pan.segment_ids.any()
    assert sem.labels.shape == (60, 62) and sem.labels.dtype == np.int32
    assert sem.probs is None
    # instances still come from the top-k over the class probabilities (as officially)
    assert inst.masks.shape[1:] == (60, 62) and inst.masks.dtype == bool
    cfg = PostprocessConfig(semantic_on=False, panoptic_on=False, instance_on=False)
    assert postprocess(logprobs, low, (32, 32), (30, 31), (60, 62), [True, False], ["a", "b"],
                       cfg) == (None, None, None)


def test_bad_inputs_are_rejected_clearly():
    logprobs = torch.log(F.softmax(torch.randn(5, 4), -1))
    low = torch.randn(5, 8, 8)
    things, labels = [True, False, True], ["a", "b", "c"]
    with pytest.raises(ValueError, match="queries"):
        postprocess(logprobs[:4], low, (32, 32), (32, 32), (32, 32), things, labels)
    with pytest.raises(ValueError, match="thing_mask"):
        postprocess(logprobs, low, (32, 32), (32, 32), (32, 32), things[:2], labels)
    with pytest.raises(ValueError, match="labels"):
        postprocess(logprobs, low, (32, 32), (32, 32), (32, 32), things, labels[:2])
    with pytest.raises(ValueError, match="fit inside"):
        postprocess(logprobs, low, (32, 32), (40, 32), (32, 32), things, labels)
    with pytest.raises(ValueError, match=r"\[Q, H, W\]"):
        postprocess(logprobs, low[0], (32, 32), (32, 32), (32, 32), things, labels)
    with pytest.raises(ValueError, match="output_hw"):
        mask_logits_to_image(low, (32, 32), (32, 32), (0, 5))
    with pytest.raises(ValueError, match="topk"):
        PostprocessConfig(topk_per_image=0)


# --------------------------------------------------------------------------- result helpers

def test_region_stats_and_boxes():
    ids = np.zeros((5, 7), dtype=np.int32)
    ids[1:3, 2:5] = 1
    ids[4, 6] = 2
    stats = region_stats(ids, 4)
    assert stats.area.tolist() == [35 - 7, 6, 1, 0]
    assert stats.bbox[1].tolist() == [2, 1, 3, 2] and stats.bbox[2].tolist() == [6, 4, 1, 1]
    assert stats.bbox[3].tolist() == [0, 0, 0, 0] and np.isnan(stats.centroid[3]).all()
    assert stats.centroid[1].tolist() == [3.0, 1.5]
    masks = np.stack([ids == 1, ids == 2, ids == 3])
    np.testing.assert_array_equal(boxes_from_masks(masks), stats.bbox[1:])
    with pytest.raises(ValueError):
        region_stats(ids, 2)


def test_benchmark_tool_runs(capsys):
    from fcclip_core.tools import bench_postprocess

    bench_postprocess.main(["--queries", "6", "--classes", "3", "--sizes", "64x96", "--repeats", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    row = lines[-1].replace("|", " ").split()
    assert row[:2] == ["64x96", "3"] and len(row) == 8
    assert all(float(v) >= 0 for v in row[2:])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_inputs_follow_the_official_formulas(reference_root, dtype):
    """Half-precision decoder outputs (GPU autocast) give the official results at that precision."""
    fx = load_fixture(reference_root, "tiny", 0)
    logprobs, low = fx["logprobs"].to(dtype), fx["low"].to(dtype)
    sem, pan, inst = postprocess(logprobs, low, *fx["geometry"], fx["things"], fx["labels"],
                                 PostprocessConfig(chunk_bytes=TINY_CHUNK))
    full = mask_logits_to_image(low, *fx["geometry"])
    ids, segments = reference_panoptic_inference(logprobs, full, fx["things"])
    np.testing.assert_array_equal(pan.segment_ids, ids.numpy())
    assert [s.id for s in pan.segments] == [d["id"] for d in segments]
    ref = reference_instance_inference(logprobs, full, fx["things"])
    assert_same_instances(
        instance_dict(inst.query_indices, inst.classes, inst.scores, inst.masks),
        instance_dict(ref["query_index"], ref["pred_classes"], ref["scores"].float(),
                      ref["pred_masks"].numpy()), 1e-6, full.float())
    assert sem.scores.dtype == np.float32 and inst.scores.dtype == np.float32
