"""Checks of post-processing inputs, so bad shapes fail with a message instead of deep in torch."""
from __future__ import annotations

from typing import Sequence

import torch

HW = tuple[int, int]


def _hw(value: Sequence[int], name: str) -> HW:
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (height, width) pair, got {value!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got {(h, w)}")
    return h, w


def check_geometry(padded_hw: Sequence[int], resized_hw: Sequence[int],
                   output_hw: Sequence[int]) -> tuple[HW, HW, HW]:
    """(padded, resized, output) as int pairs; the resized image must fit in the padded one."""
    padded, resized, output = (_hw(padded_hw, "padded_hw"), _hw(resized_hw, "resized_hw"),
                               _hw(output_hw, "output_hw"))
    if resized[0] > padded[0] or resized[1] > padded[1]:
        raise ValueError(f"resized_hw {resized} must fit inside padded_hw {padded}")
    return padded, resized, output


def squeeze_masks(mask_logits: torch.Tensor, name: str) -> torch.Tensor:
    """[Q, H, W] floating-point mask logits (a leading batch of one is dropped)."""
    if mask_logits.dim() == 4 and mask_logits.shape[0] == 1:
        mask_logits = mask_logits[0]
    if mask_logits.dim() != 3:
        raise ValueError(f"{name} must be [Q, H, W] (or [1, Q, H, W]), got {tuple(mask_logits.shape)}")
    if not mask_logits.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {mask_logits.dtype}")
    return mask_logits


def check_classes(mask_cls_logprobs: torch.Tensor, num_queries: int,
                  thing_mask: Sequence[bool] | torch.Tensor,
                  labels: Sequence[str] | None) -> torch.Tensor:
    """Validate [Q, K+1] class log-probabilities against the vocabulary; the thing mask (CPU)."""
    if mask_cls_logprobs.dim() == 3 and mask_cls_logprobs.shape[0] == 1:
        raise ValueError("mask_cls_logprobs must be [Q, K+1] for one image; drop the batch dim")
    if mask_cls_logprobs.dim() != 2 or mask_cls_logprobs.shape[1] < 2:
        raise ValueError(f"mask_cls_logprobs must be [Q, K+1] with K >= 1, got "
                         f"{tuple(mask_cls_logprobs.shape)}")
    if mask_cls_logprobs.shape[0] != num_queries:
        raise ValueError(f"mask_cls_logprobs has {mask_cls_logprobs.shape[0]} queries but the "
                         f"mask logits have {num_queries}")
    k = mask_cls_logprobs.shape[1] - 1
    things = torch.as_tensor(thing_mask, dtype=torch.bool).reshape(-1).cpu()
    if things.numel() != k:
        raise ValueError(f"thing_mask has {things.numel()} entries for {k} classes")
    if labels is not None and len(labels) != k:
        raise ValueError(f"labels has {len(labels)} names for {k} classes")
    return things
