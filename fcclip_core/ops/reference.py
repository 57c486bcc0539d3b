"""Pure-PyTorch multi-scale deformable attention: the numerical ground truth for the native ops.

It computes what FC-CLIP's own CPU fallback computes (per-level ``F.grid_sample``, bilinear,
zero padding, ``align_corners=False``, grid ``2 * loc - 1``, then the attention-weighted sum),
so the model's parity tests against official outputs hold whichever path runs. It is slow and
memory hungry (it materialises every sampled vector), which is why the native ops exist.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ms_deform_attn_reference(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention with autograd through ``F.grid_sample``.

    value [N, S, M, D]; spatial_shapes [L, 2] rows (H, W); level_start_index [L] (unused here: the
    levels are taken as consecutive blocks of ``value``, as the official fallback does);
    sampling_locations [N, Lq, M, L, P, 2] normalised (x, y); attention_weights [N, Lq, M, L, P].
    Returns [N, Lq, M * D]. A level with H * W == 0 contributes zero.
    """
    del level_start_index  # same contract as the native ops, which do read it
    n, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    sizes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    per_level_values = value.split([h * w for h, w in sizes], dim=1)
    # grid_sample addresses the map in [-1, 1]; the op's locations are in [0, 1].
    grids = sampling_locations * 2 - 1
    sampled_levels = []
    for level, (h, w) in enumerate(sizes):
        if h * w == 0:
            # grid_sample rejects empty maps; an empty level has nothing to sample.
            sampled_levels.append(value.new_zeros(n * heads, channels, queries, points))
            continue
        # [N, H*W, M, D] -> [N*M, D, H, W]: one image per (batch, head) with D channels.
        maps = per_level_values[level].flatten(2).transpose(1, 2).reshape(n * heads, channels, h, w)
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]: the matching grid per (batch, head).
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled_levels.append(
            F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    # [N*M, D, Lq, L*P] sampled vectors weighted by [N*M, 1, Lq, L*P] and summed over levels x points.
    if sampled_levels:
        sampled = torch.stack(sampled_levels, dim=-2).flatten(-2)
    else:
        sampled = value.new_zeros(n * heads, channels, queries, 0)
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, queries, levels * points)
    out = (sampled * weights).sum(-1).view(n, heads * channels, queries)
    return out.transpose(1, 2).contiguous()
