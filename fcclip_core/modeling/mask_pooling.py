"""Average a feature map over each query's mask (the mask logits binarised at 0)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mask_pool(features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Mean of ``features`` [B, C, H, W] over the pixels where ``mask_logits`` [B, Q, h, w] > 0.

    Masks of another size are bilinearly resized to the feature grid first. An empty mask
    pools to zeros (the 1e-8 in the denominator, as in the official code). Returns [B, Q, C].
    """
    if mask_logits.shape[-2:] != features.shape[-2:]:
        mask_logits = F.interpolate(mask_logits, size=features.shape[-2:], mode="bilinear", align_corners=False)
    masks = (mask_logits > 0).to(features.dtype)
    area = masks.sum(dim=(-1, -2), keepdim=True) + 1e-8
    return torch.einsum("bchw,bqhw->bqc", features, masks / area)
