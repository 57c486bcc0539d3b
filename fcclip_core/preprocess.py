"""Image preprocessing exactly as the official FC-CLIP test pipeline does it.

1. Test-time resize (detectron2 ``ResizeShortestEdge``): scale so the short side is
   ``min_size_test``, capping the long side at ``max_size_test``, sizes rounded half up; the
   pixels are resampled by PIL's bilinear filter on the uint8 image. ``min_size_test=None``
   keeps the native size (robots may prefer that to the 800-pixel default).
2. Normalisation in 0..255 RGB units: (x - mean) / std, float32, CHW.
3. Zero padding (after normalisation) at the bottom/right to a multiple of the size
   divisibility, batching images of different sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fcclip_core.config import InputConfig


def resized_shape(height: int, width: int, short_edge: int, max_size: int) -> Tuple[int, int]:
    """(new_h, new_w): short side ``short_edge``, long side at most ``max_size``, rounded half up.

    A side never rounds to 0: extreme aspect ratios (1 x 3000 under a long-side cap) keep at
    least one pixel, where the official rounding would produce an empty image.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    scale = float(short_edge) / min(height, width)
    if height < width:
        new_h, new_w = float(short_edge), scale * width
    else:
        new_h, new_w = scale * height, float(short_edge)
    if max(new_h, new_w) > max_size:
        shrink = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return max(1, int(new_h + 0.5)), max(1, int(new_w + 0.5))


def _check_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    return image


def resize_shortest_edge(image: np.ndarray, short_edge: Optional[int], max_size: int) -> np.ndarray:
    """The official test-time resize of an H x W x 3 uint8 RGB image (PIL bilinear)."""
    image = _check_rgb_uint8(image)
    if short_edge is None:
        return image
    new_h, new_w = resized_shape(image.shape[0], image.shape[1], short_edge, max_size)
    resized = Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR)
    return np.asarray(resized)


def normalize(image: np.ndarray | torch.Tensor, pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> torch.Tensor:
    """H x W x 3 uint8 (numpy) or 3 x H x W float tensor in 0..255 -> normalised 3 x H x W float32."""
    if isinstance(image, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(_check_rgb_uint8(image).transpose(2, 0, 1))).float()
    else:
        x = image.float()
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a 3 x H x W tensor, got {tuple(x.shape)}")
    mean = torch.tensor(pixel_mean, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    std = torch.tensor(pixel_std, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    return (x - mean) / std


def pad_batch(images: Sequence[torch.Tensor], size_divisibility: int) -> torch.Tensor:
    """Stack 3 x H_i x W_i tensors into [B, 3, H, W], zero-padded at the bottom/right so H and
    W cover every image and are multiples of ``size_divisibility``."""
    if not images:
        raise ValueError("no images to batch")
    height = max(int(im.shape[-2]) for im in images)
    width = max(int(im.shape[-1]) for im in images)
    if size_divisibility > 1:
        height = (height + size_divisibility - 1) // size_divisibility * size_divisibility
        width = (width + size_divisibility - 1) // size_divisibility * size_divisibility
    return torch.stack([F.pad(im, (0, width - im.shape[-1], 0, height - im.shape[-2]), value=0.0) for im in images])


@dataclass
class PreprocessedBatch:
    images: torch.Tensor  # [B, 3, H, W] normalised and padded: the network input
    image_sizes: List[Tuple[int, int]]  # (h, w) of each image after the test-time resize
    original_sizes: List[Tuple[int, int]]  # (h, w) of each input image: the output resolution

    @property
    def padded_size(self) -> Tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])


def preprocess_images(images: Sequence[np.ndarray], cfg: InputConfig) -> PreprocessedBatch:
    """Resize, normalise and pad H x W x 3 uint8 RGB images into one network input batch."""
    resized = [resize_shortest_edge(im, cfg.min_size_test, cfg.max_size_test) for im in images]
    tensors = [normalize(im, cfg.pixel_mean, cfg.pixel_std) for im in resized]
    return PreprocessedBatch(
        images=pad_batch(tensors, cfg.size_divisibility),
        image_sizes=[(int(im.shape[0]), int(im.shape[1])) for im in resized],
        original_sizes=[(int(im.shape[0]), int(im.shape[1])) for im in images],
    )
