"""Mask logits from query embeddings, and feature averages over query masks.

Both are batched matrix products over the flattened pixel grid. ``pixels_by_channel`` views a
[B, C, H, W] map as [B, H*W, C] without copying, whether the map is contiguous or channels-last
(the pixel decoder's output is channels-last when the backbone runs so), so neither product
pays for a transposing copy of a large feature map.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pixels_by_channel(features: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H*W, C] view (no copy for contiguous or channels-last memory)."""
    return features.flatten(2).transpose(1, 2)


def mask_logits(embeddings: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Per-pixel dot products of query embeddings [B, Q, C] with a feature map [B, C, H, W]
    -> [B, Q, H, W]."""
    batch, _, height, width = features.shape
    flat = pixels_by_channel(features)  # [B, HW, C]
    return torch.bmm(embeddings, flat.transpose(1, 2)).view(batch, -1, height, width)


def masks_on_grid(mask_logits: torch.Tensor, grid_hw: tuple[int, ...]) -> torch.Tensor:
    """Mask logits [B, Q, h, w] on a feature grid of size ``grid_hw`` (bilinear when it differs)."""
    if tuple(mask_logits.shape[-2:]) == tuple(grid_hw):
        return mask_logits
    return F.interpolate(mask_logits, size=tuple(grid_hw), mode="bilinear", align_corners=False)


def mask_pool(features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Mean of ``features`` [B, C, H, W] over the pixels where ``mask_logits`` [B, Q, h, w] > 0.

    Masks of another size are bilinearly resized to the feature grid first. An empty mask
    pools to zeros (the 1e-8 in the denominator, as in the official code). Returns [B, Q, C].
    """
    masks = (masks_on_grid(mask_logits, features.shape[-2:]) > 0).to(features.dtype).flatten(2)  # [B, Q, HW]
    area = masks.sum(dim=-1, keepdim=True) + 1e-8
    return torch.bmm(masks / area, pixels_by_channel(features))
