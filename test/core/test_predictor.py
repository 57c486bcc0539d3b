"""Predictor: numpy in, results out, the official decisions end to end, vocabulary swaps."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from fcclip_core.predictor import Predictor, resolve_device
from fcclip_core.vocabulary import parse_vocabulary
from fcclip_core.weights import WeightsNotFoundError


@pytest.fixture(scope="module")
def tiny(reference_root):
    vocab = json.loads((reference_root / "tiny" / "vocab.json").read_text())
    isthing = vocab["isthing"]
    stuff = [i for i, flag in enumerate(isthing) if not flag]
    predictor = Predictor.from_config("fixture_tiny", reference_root / "tiny" / "weights.pth", device="cpu",
                                      input_short_side=128)
    predictor.set_vocabulary(vocab["stuff_classes"], stuff=stuff)
    inputs = np.load(reference_root / "tiny" / "inputs.npz")
    expected = torch.load(reference_root / "tiny" / "expected.pt", weights_only=True)
    return predictor, inputs, expected


def test_panoptic_matches_the_official_fixture(tiny):
    predictor, inputs, expected = tiny
    for i, image_expected in enumerate(expected["images"]):
        result = predictor.predict(inputs[f"image{i}_orig_rgb"])
        panoptic = result.panoptic
        want_ids = image_expected["panoptic_seg"].numpy()
        assert panoptic.segment_ids.shape == want_ids.shape
        assert [(s.id, s.isthing, s.category_id) for s in panoptic.segments] == [
            (s["id"], s["isthing"], s["category_id"]) for s in image_expected["segments_info"]]
        # Pixels may differ only where fragility.json says the official decision is float noise.
        assert (panoptic.segment_ids != want_ids).sum() <= 5
        semantic = image_expected["sem_seg"].argmax(0).numpy()
        assert (result.semantic.labels != semantic).mean() < 1e-3
        assert len(result.instances) == len(image_expected["instances"]["scores"])


def test_resnet_model_reproduces_the_official_resnet_fixture(reference_root):
    folder = reference_root / "rn_tiny"
    vocab = json.loads((folder / "vocab.json").read_text())
    stuff = [i for i, flag in enumerate(vocab["isthing"]) if not flag]
    predictor = Predictor.from_config("fixture_rn_tiny", folder / "weights.pth", device="cpu", input_short_side=128)
    predictor.set_vocabulary(vocab["stuff_classes"], stuff=stuff)
    inputs = np.load(folder / "inputs.npz")
    expected = torch.load(folder / "expected.pt", weights_only=False)
    for i, image_expected in enumerate(expected["images"]):
        result = predictor.predict(inputs[f"image{i}_orig_rgb"])
        assert np.array_equal(result.panoptic.segment_ids, image_expected["panoptic_seg"].numpy())
        assert [(s.id, s.isthing, s.category_id) for s in result.panoptic.segments] == [
            (s["id"], s["isthing"], s["category_id"]) for s in image_expected["segments_info"]]
        assert np.array_equal(result.semantic.labels, image_expected["sem_seg"].argmax(0).numpy())
        assert len(result.instances) == len(image_expected["instances"]["scores"])


def test_results_are_consistent_and_at_input_resolution(tiny):
    predictor, _, _ = tiny
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, size=(97, 131, 3), dtype=np.uint8)
    result = predictor.predict(image)
    assert result.image_hw == (97, 131)
    ids = result.panoptic.segment_ids
    assert ids.shape == (97, 131) and ids.dtype == np.int32
    present = set(np.unique(ids).tolist()) - {0}
    assert present == {s.id for s in result.panoptic.segments}
    for segment in result.panoptic.segments:
        assert segment.area == int((ids == segment.id).sum())
        assert segment.label == result.vocabulary.labels[segment.category_id]
    assert result.semantic.labels.shape == (97, 131)
    assert result.instances.masks.shape[1:] == (97, 131)
    assert set(result.timings) >= {"preprocess", "network", "postprocess", "total"}


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 1)])
def test_extreme_aspect_ratios_are_segmented_at_input_resolution(reference_root, shape):
    # The default short side (800) with the long-side cap: the official rounding empties a side.
    predictor = Predictor.from_config("fixture_tiny", reference_root / "tiny" / "weights.pth", device="cpu")
    predictor.set_vocabulary(["cat", "sky"], stuff=["sky"])
    result = predictor.predict(np.full((*shape, 3), 120, np.uint8), tasks={"panoptic"})
    assert result.panoptic.segment_ids.shape == shape


def test_retune_changes_the_next_prediction_without_rebuilding(reference_root):
    predictor = Predictor.from_config("fixture_tiny", reference_root / "tiny" / "weights.pth", device="cpu",
                                      input_short_side=128)
    predictor.set_vocabulary(["cat", "sky", "grass"], stuff=["sky", "grass"])
    image = np.random.default_rng(5).integers(0, 255, size=(90, 120, 3), dtype=np.uint8)
    model = predictor.model
    assert predictor.predict(image, tasks={"panoptic"}).panoptic.segments
    predictor.retune(object_mask_threshold=1.0)  # no class probability exceeds 1: nothing is kept
    assert predictor.predict(image, tasks={"panoptic"}).panoptic.segments == []
    predictor.retune(object_mask_threshold=0.0, ensemble_alpha=0.0, ensemble_beta=1.0, input_short_side=64)
    assert predictor.model is model and model.config.inference.ensemble_beta == 1.0
    assert predictor.input_config.min_size_test == 64
    assert predictor.predict(image, tasks={"panoptic"}).panoptic.segment_ids.shape == (90, 120)
    with pytest.raises(ValueError, match="overlap_threshold must be in"):
        predictor.retune(overlap_threshold=1.5)
    with pytest.raises(ValueError, match="input_short_side"):
        predictor.retune(input_short_side=-1)


def test_tasks_subset_and_bad_images(tiny):
    predictor, inputs, _ = tiny
    image = inputs["image0_orig_rgb"]
    only = predictor.predict(image, tasks={"panoptic"})
    assert only.panoptic is not None and only.semantic is None and only.instances is None
    with pytest.raises(ValueError, match="unknown tasks"):
        predictor.predict(image, tasks={"depth"})
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict(image.astype(np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        predictor.predict(image[..., 0])
    with pytest.raises(ValueError, match="empty"):
        predictor.predict(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(TypeError):
        predictor.predict([[1, 2, 3]])


def test_vocabulary_versions_and_atomic_swap(tiny, reference_root):
    predictor, inputs, _ = tiny
    image = inputs["image1_orig_rgb"]
    before = predictor.vocabulary_version
    small = parse_vocabulary(["wall", "floor, ground", "chair"], stuff=["wall", "floor"])
    version = predictor.set_vocabulary(small)
    assert version == before + 1 and predictor.vocabulary is small
    result = predictor.predict(image)
    assert result.vocabulary_version == version and result.vocabulary is small
    assert all(s.category_id < 3 for s in result.panoptic.segments)

    # A vocabulary prepared on another thread becomes visible only when activated.
    other = parse_vocabulary(["tree", "car, cars"], stuff=["tree"])
    prepared = {}
    thread = threading.Thread(target=lambda: prepared.setdefault("p", predictor.prepare_vocabulary(other)))
    thread.start()
    mid = predictor.predict(image)
    thread.join()
    assert mid.vocabulary is small and mid.vocabulary_version == version
    new_version = predictor.activate(prepared["p"])
    assert new_version == version + 1
    after = predictor.predict(image)
    assert after.vocabulary is other and after.vocabulary_version == new_version
    assert all(s.category_id < 2 for s in after.panoptic.segments)


def test_construction_errors(reference_root, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="not a released model: give its weights"):
        Predictor.from_config("fixture_tiny")
    # The released model with an empty cache: an immediate error naming the command to run.
    monkeypatch.setenv("FCCLIP_WEIGHTS_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsNotFoundError, match="fcclip-weights download convnext_large"):
        Predictor.from_config("convnext_large")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="input_short_side"):
        Predictor.from_config("fixture_tiny", untrained=True, input_short_side=-1)
