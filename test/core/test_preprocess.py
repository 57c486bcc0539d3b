"""Preprocessing reproduces the official resize, normalisation and padding bit for bit."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fcclip_core.config import InputConfig, model_config_from_reference
from fcclip_core.preprocess import pad_batch, preprocess_images, resize_shortest_edge, resized_shape


def test_resized_shape_scales_the_short_side_and_caps_the_long_side():
    assert resized_shape(150, 226, 128, 1333) == (128, round(226 * 128 / 150))
    assert resized_shape(170, 120, 128, 1333) == (round(170 * 128 / 120), 128)
    # 100x1000 at short side 800 would be 8000 long: capped at 1333, short side shrinks alike
    assert resized_shape(100, 1000, 800, 1333) == (133, 1333)
    with pytest.raises(ValueError):
        resized_shape(0, 10, 800, 1333)


def test_extreme_aspect_ratios_keep_at_least_one_pixel():
    # 1 x 3000 at short side 800 is capped to a long side of 1333: the short side would round to 0.
    assert resized_shape(1, 3000, 800, 1333) == (1, 1333)
    assert resized_shape(3000, 1, 800, 1333) == (1333, 1)
    image = np.full((1, 3000, 3), 200, np.uint8)
    assert resize_shortest_edge(image, 800, 1333).shape == (1, 1333, 3)
    assert resize_shortest_edge(image.transpose(1, 0, 2), 800, 1333).shape == (1333, 1, 3)


def test_fixture_images_resize_and_normalise_exactly(reference_root):
    fixture = reference_root / "tiny"
    cfg = model_config_from_reference(fixture).input
    data = np.load(fixture / "inputs.npz")
    index = 0
    while f"image{index}_orig_rgb" in data:
        original = data[f"image{index}_orig_rgb"]
        resized = resize_shortest_edge(original, cfg.min_size_test, cfg.max_size_test)
        np.testing.assert_array_equal(resized, data[f"image{index}_model_input_rgb"])
        batch = preprocess_images([original], cfg)
        expected = torch.from_numpy(data[f"image{index}_backbone_input"])
        assert batch.images.shape == expected.shape
        assert (batch.images - expected).abs().max().item() <= 1e-6
        assert batch.image_sizes == [resized.shape[:2]]
        assert batch.original_sizes == [original.shape[:2]]
        index += 1
    assert index >= 2


def test_native_size_skips_the_resize(reference_root):
    data = np.load(reference_root / "large" / "input.npz")
    cfg = dataclasses.replace(InputConfig(), min_size_test=None)
    batch = preprocess_images([data["input_rgb_uint8"]], cfg)
    assert torch.equal(batch.images, torch.from_numpy(data["backbone_input"]))


def test_padding_is_zero_after_normalisation_and_covers_all_images():
    a, b = torch.ones(3, 40, 70), torch.full((3, 65, 20), 2.0)
    batch = pad_batch([a, b], 32)
    assert batch.shape == (2, 3, 96, 96)
    assert torch.equal(batch[0, :, :40, :70], a) and batch[0, :, 40:].abs().sum() == 0
    assert torch.equal(batch[1, :, :65, :20], b) and batch[1, :, :, 20:].abs().sum() == 0


def test_bad_images_are_rejected():
    with pytest.raises(ValueError, match="RGB"):
        resize_shortest_edge(np.zeros((10, 10), np.uint8), 8, 100)
    with pytest.raises(ValueError, match="uint8"):
        resize_shortest_edge(np.zeros((10, 10, 3), np.float32), 8, 100)
