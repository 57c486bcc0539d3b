"""Synonym-max classification and the geometric in/out-vocabulary ensemble."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fcclip_core.modeling.classification import TextClassifier, classification_logits, geometric_ensemble
from fcclip_core.modeling.mask_pooling import mask_pool

from .conftest import max_abs_err


def _classifier(counts, seen, dim=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rows = F.normalize(torch.randn(sum(counts), dim, generator=gen), dim=-1)
    return TextClassifier.build(rows, counts, seen, torch.randn(1, dim, generator=gen)), rows


def test_class_logit_is_the_best_synonym_and_void_is_last():
    classifier, rows = _classifier([3, 1, 2], [True, False, True])
    feats = torch.randn(2, 4, 8)
    logits = classification_logits(feats, classifier, torch.tensor(math.log(10.0)))
    cos = F.normalize(feats, dim=-1) @ rows.T * 10.0
    assert logits.shape == (2, 4, 4)
    assert torch.allclose(logits[..., 0], cos[..., 0:3].max(-1).values, atol=1e-5)
    assert torch.allclose(logits[..., 1], cos[..., 3], atol=1e-5)
    assert torch.allclose(logits[..., 2], cos[..., 4:6].max(-1).values, atol=1e-5)
    void = F.normalize(classifier.weights[-1], dim=-1)
    assert torch.allclose(logits[..., 3], F.normalize(feats, dim=-1) @ void * 10.0, atol=1e-5)


def test_logit_scale_is_capped_at_100():
    classifier, _ = _classifier([1, 1], [True, True])
    feats = classifier.weights[:1].reshape(1, 1, -1)  # cosine 1 with class 0
    logits = classification_logits(feats, classifier, torch.tensor(math.log(500.0)))
    assert logits[0, 0, 0].item() == pytest.approx(100.0, abs=1e-4)


def test_bad_vocabularies_are_rejected():
    rows = torch.randn(4, 8)
    void = torch.randn(1, 8)
    with pytest.raises(ValueError, match="sum to"):
        TextClassifier.build(rows, [2, 1], [True, True], void)
    with pytest.raises(ValueError, match="seen mask"):
        TextClassifier.build(rows, [2, 2], [True], void)
    with pytest.raises(ValueError, match="dim"):
        TextClassifier.build(rows, [2, 2], [True, True], torch.randn(1, 5))


def test_ensemble_matches_the_official_intermediate_tensors(tiny_expected):
    seen = tiny_expected["category_overlapping_mask"]
    for image in tiny_expected["images"]:
        result = geometric_ensemble(image["decoder"]["pred_logits"], image["out_vocab_logits_with_void"], seen, 0.4, 0.8)
        assert max_abs_err(result.in_vocab_probs, image["in_vocab_probs"]) < 1e-6
        assert max_abs_err(result.out_vocab_probs, image["out_vocab_probs"]) < 1e-6
        assert max_abs_err(result.ensemble_logits, image["ensemble_cls_results"]) < 1e-5
        assert max_abs_err(result.is_void_prob, image["is_void_prob"]) < 1e-6
        assert max_abs_err(result.mask_cls_probs, image["mask_cls_probs"]) < 1e-6
        assert max_abs_err(result.mask_cls_logprobs[0], image["mask_cls_final_logprobs"]) < 1e-5


def test_ensemble_weights_seen_and_unseen_classes_differently():
    in_logits = torch.randn(1, 3, 5)
    out_logits = torch.randn(1, 3, 5)
    seen = torch.tensor([1, 0, 1, 0])
    result = geometric_ensemble(in_logits, out_logits, seen, alpha=0.4, beta=0.8)
    p_in, p_out = in_logits[..., :-1].softmax(-1), out_logits[..., :-1].softmax(-1)
    expected = torch.where(seen.bool(), 0.6 * p_in.log() + 0.4 * p_out.log(), 0.2 * p_in.log() + 0.8 * p_out.log())
    assert torch.allclose(result.ensemble_logits, expected, atol=1e-5)
    void = in_logits.softmax(-1)[..., -1:]
    assert torch.allclose(result.mask_cls_probs[..., -1:], void)
    assert torch.allclose(result.mask_cls_probs.sum(-1), torch.ones(1, 3), atol=1e-6)


def test_invalid_queries_use_the_in_vocabulary_classifier_only():
    in_logits = torch.randn(1, 2, 4)
    out_logits = torch.randn(1, 2, 4)
    result = geometric_ensemble(in_logits, out_logits, torch.tensor([1, 0, 1]), 0.4, 0.8,
                                valid_queries=torch.tensor([[True, False]]))
    assert torch.allclose(result.ensemble_logits[0, 1], in_logits[0, 1, :-1].softmax(-1).log(), atol=1e-6)
    assert not torch.allclose(result.ensemble_logits[0, 0], in_logits[0, 0, :-1].softmax(-1).log(), atol=1e-3)


def test_mask_pooling_averages_over_positive_logits():
    feats = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(1, 2, 2, 3)
    masks = torch.tensor([[[[1.0, -1.0, 2.0], [-1.0, -1.0, 0.5]], [[-1.0] * 3, [-1.0] * 3]]])
    pooled = mask_pool(feats, masks)
    on = masks[0, 0] > 0
    assert torch.allclose(pooled[0, 0], feats[0][:, on].mean(-1))
    assert torch.equal(pooled[0, 1], torch.zeros(2))  # empty mask pools to zero
