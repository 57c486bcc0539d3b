"""Moving frames to the device: the uint8 upload path computes exactly the host path's input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fcclip_core.config import load_model_config
from fcclip_core.preprocess import normalize, preprocess_images
from fcclip_core.upload import PinnedStaging, image_to_device


def test_uint8_tensor_path_normalises_exactly_like_the_numpy_path():
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    cfg = load_model_config("fixture_tiny").input
    pixels = image_to_device(image, torch.device("cpu"))
    assert pixels.dtype is torch.uint8 and tuple(pixels.shape) == (3, 37, 53)
    torch.testing.assert_close(normalize(pixels, cfg.pixel_mean, cfg.pixel_std),
                               normalize(image, cfg.pixel_mean, cfg.pixel_std), rtol=0, atol=0)


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        image_to_device(np.zeros((4, 4, 3), np.float32), torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pinned_upload_matches_the_host_batch():
    cfg = load_model_config("fixture_tiny").input
    staging = PinnedStaging()
    rng = np.random.default_rng(1)
    for shape in ((64, 96, 3), (120, 80, 3), (64, 96, 3)):  # the buffer grows, then is reused
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        on_gpu = preprocess_images([image], cfg, torch.device("cuda"), staging)
        on_host = preprocess_images([image], cfg)
        assert on_gpu.images.device.type == "cuda"
        torch.testing.assert_close(on_gpu.images.cpu(), on_host.images, rtol=0, atol=0)
        assert on_gpu.image_sizes == on_host.image_sizes
