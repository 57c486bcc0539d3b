"""The whole network: every recorded official intermediate from one forward pass."""
from __future__ import annotations

import pytest
import torch

from .conftest import max_abs_err

STAGES = ("backbone", "pixel_decoder", "decoder")
TOP_LEVEL = (
    "text_classifier_with_void", "mask_for_pooling", "pooled_clip_feature_raw", "pooled_clip_embedding",
    "out_vocab_logits_with_void", "in_vocab_probs", "out_vocab_probs", "ensemble_cls_results", "is_void_prob",
    "mask_cls_probs",
)


def _run(model, expected, image, **kwargs):
    text = expected["text"]
    return model(image["backbone_input"], text["text_classifier"], text["num_templates"],
                 expected["category_overlapping_mask"], **kwargs)


def _pairs(ours, theirs, prefix=""):
    if isinstance(theirs, dict):
        for key, value in theirs.items():
            yield from _pairs(ours[key], value, f"{prefix}{key}.")
    elif isinstance(theirs, (list, tuple)):
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            yield from _pairs(a, b, f"{prefix}{index}.")
    else:
        yield prefix.rstrip("."), ours, theirs


def test_every_recorded_intermediate_matches(tiny_model, tiny_expected):
    for image in tiny_expected["images"]:
        out = _run(tiny_model, tiny_expected, image, return_intermediates=True)
        inter = out.intermediates
        checked = 0
        for stage in STAGES:
            for name, ours, theirs in _pairs(inter[stage], image[stage], f"{stage}."):
                assert max_abs_err(ours, theirs) < 1e-4, name
                checked += 1
        for name in TOP_LEVEL:
            assert max_abs_err(inter[name], image[name]) < 1e-4, name
        assert max_abs_err(out.mask_cls_logprobs[0], image["mask_cls_final_logprobs"]) < 1e-4
        assert checked >= 14


def test_outputs_without_intermediates_are_the_same(tiny_model, tiny_expected):
    image = tiny_expected["images"][0]
    full = _run(tiny_model, tiny_expected, image, return_intermediates=True)
    lean = _run(tiny_model, tiny_expected, image)
    assert lean.intermediates == {}
    for name in ("pred_masks", "pred_logits", "out_vocab_logits", "mask_cls_logprobs"):
        assert torch.equal(getattr(full, name), getattr(lean, name)), name


def test_a_batch_of_images_is_processed_image_by_image(tiny_model, tiny_expected):
    image = tiny_expected["images"][0]
    text = tiny_expected["text"]
    classifier = tiny_model.text_classifier(text["text_classifier"], text["num_templates"],
                                            tiny_expected["category_overlapping_mask"])
    single = tiny_model(image["backbone_input"], classifier)
    flipped = image["backbone_input"].flip(-1)
    batch = tiny_model(torch.cat([image["backbone_input"], flipped]), classifier)
    assert batch.pred_masks.shape[0] == 2
    assert max_abs_err(batch.mask_cls_logprobs[:1], single.mask_cls_logprobs) < 1e-4
    assert max_abs_err(batch.pred_masks[:1], single.pred_masks) < 1e-4


def test_bad_inputs_are_rejected(tiny_model, tiny_expected):
    text = tiny_expected["text"]
    args = (text["text_classifier"], text["num_templates"], tiny_expected["category_overlapping_mask"])
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny_model(torch.zeros(1, 3, 100, 64), *args)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny_model(torch.zeros(3, 64, 64), *args)
    with pytest.raises(ValueError, match="synonym_counts"):
        tiny_model(torch.zeros(1, 3, 64, 64), text["text_classifier"])
