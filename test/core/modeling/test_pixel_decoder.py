"""Pixel decoder: official outputs from the official backbone features."""
from __future__ import annotations

import torch

from .conftest import max_abs_err


def test_pixel_decoder_reproduces_the_official_outputs(tiny_model, tiny_expected):
    decoder = tiny_model.sem_seg_head.pixel_decoder
    for image in tiny_expected["images"]:
        with torch.inference_mode():
            mask_features, multi_scale = decoder(image["backbone"])
        expected = image["pixel_decoder"]
        assert max_abs_err(mask_features, expected["mask_features"]) < 1e-4
        assert len(multi_scale) == len(expected["multi_scale_features"]) == 3
        for ours, theirs in zip(multi_scale, expected["multi_scale_features"]):
            assert max_abs_err(ours, theirs) < 1e-4
        assert max_abs_err(multi_scale[0], expected["transformer_encoder_features"]) < 1e-4


def test_output_strides_follow_the_input(tiny_model):
    x = torch.zeros(1, 3, 64, 96)
    with torch.inference_mode():
        features = tiny_model.forward_features(x)
        mask_features, multi_scale = tiny_model.sem_seg_head.pixel_decoder(features)
    assert mask_features.shape == (1, 64, 16, 24)
    assert [tuple(m.shape[-2:]) for m in multi_scale] == [(2, 3), (4, 6), (8, 12)]
