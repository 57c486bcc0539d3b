"""Masked-attention decoder: official predictions from the official pixel-decoder outputs."""
from __future__ import annotations

import torch

from fcclip_core.modeling.classification import TextClassifier

from .conftest import max_abs_err


def _classifier(model, expected):
    text = expected["text"]
    return model.text_classifier(text["text_classifier"], text["num_templates"], expected["category_overlapping_mask"])


def _decode(model, image, classifier, **kwargs):
    pd = image["pixel_decoder"]
    with torch.inference_mode():
        return model.sem_seg_head.predictor(pd["multi_scale_features"], pd["mask_features"], classifier, **kwargs)


def test_decoder_reproduces_the_official_predictions(tiny_model, tiny_expected):
    classifier = _classifier(tiny_model, tiny_expected)
    for image in tiny_expected["images"]:
        out = _decode(tiny_model, image, classifier, return_aux=True)
        dec = image["decoder"]
        assert max_abs_err(out.pred_logits, dec["pred_logits"]) < 1e-4
        assert max_abs_err(out.pred_masks, dec["pred_masks"]) < 1e-4
        assert max_abs_err(torch.stack(out.aux_pred_logits), dec["aux_pred_logits"]) < 1e-4
        assert max_abs_err(torch.stack(out.aux_pred_masks), dec["aux_pred_masks"]) < 1e-4


def test_auxiliary_outputs_do_not_change_the_final_prediction(tiny_model, tiny_expected):
    classifier = _classifier(tiny_model, tiny_expected)
    image = tiny_expected["images"][0]
    plain = _decode(tiny_model, image, classifier)
    with_aux = _decode(tiny_model, image, classifier, return_aux=True)
    assert plain.aux_pred_masks == [] and len(with_aux.aux_pred_masks) == tiny_model.config.decoder.num_layers
    assert torch.equal(plain.pred_masks, with_aux.pred_masks)
    assert torch.equal(plain.pred_logits, with_aux.pred_logits)


def test_attention_masks_from_resized_features_agree_with_the_official_order(tiny_model, tiny_expected):
    predictor = tiny_model.sem_seg_head.predictor
    classifier = _classifier(tiny_model, tiny_expected)
    for image in tiny_expected["images"]:
        fast = _decode(tiny_model, image, classifier)
        predictor.exact_attention_masks = True
        try:
            exact = _decode(tiny_model, image, classifier)
        finally:
            predictor.exact_attention_masks = False
        assert max_abs_err(fast.pred_masks, exact.pred_masks) < 1e-4


def test_a_query_with_an_empty_mask_attends_everywhere(tiny_model):
    predictor = tiny_model.sem_seg_head.predictor
    logits = torch.tensor([[[[-1.0, -2.0], [-3.0, -0.5]], [[1.0, -1.0], [-1.0, 2.0]]]])
    blocked = predictor._blocked(logits)
    assert blocked.shape == (1, 1, 2, 4)
    assert not blocked[0, 0, 0].any()  # all off -> nothing blocked
    assert blocked[0, 0, 1].tolist() == [False, True, True, False]


def test_vocabulary_size_sets_the_number_of_classes(tiny_model, tiny_expected):
    image = tiny_expected["images"][1]
    rows = torch.nn.functional.normalize(torch.randn(5, 48), dim=-1)
    classifier = TextClassifier.build(rows, [2, 1, 2], [True, False, True], tiny_model.void_embedding.weight)
    out = _decode(tiny_model, image, classifier)
    assert out.pred_logits.shape == (1, 20, 4)
