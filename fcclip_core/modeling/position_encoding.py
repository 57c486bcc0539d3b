"""Normalised 2-D sine positional encoding (DETR / Mask2Former style), cached per grid size.

Without padding masks the encoding depends only on the grid size, so it is computed once per
(H, W, device) and reused: each image size costs it once instead of every layer and call.
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
from torch import nn


def sine_position_encoding(
    height: int,
    width: int,
    num_pos_feats: int,
    temperature: float = 10000.0,
    scale: float = 2 * math.pi,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Encoding [1, 2 * num_pos_feats, H, W]: y features first, then x, sin/cos interleaved.

    Row r (1-based) is placed at r / (H + 1e-6) * scale, column c at c / (W + 1e-6) * scale,
    and each is expanded over ``num_pos_feats`` frequencies temperature ** (2 * (i // 2) / n).
    """
    eps = 1e-6
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    rows = rows / (rows[-1:] + eps) * scale if height else rows
    cols = cols / (cols[-1:] + eps) * scale if width else cols
    freq_index = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    freqs = temperature ** (2 * torch.div(freq_index, 2, rounding_mode="floor") / num_pos_feats)

    def expand(coords: torch.Tensor) -> torch.Tensor:  # [n] -> [n, num_pos_feats]
        phases = coords[:, None] / freqs
        return torch.stack((phases[:, 0::2].sin(), phases[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = expand(rows)[:, None, :].expand(height, width, num_pos_feats)
    pos_x = expand(cols)[None, :, :].expand(height, width, num_pos_feats)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).unsqueeze(0).contiguous()


class PositionEmbeddingSine(nn.Module):
    """Sine encoding for feature maps, memoised by grid size and device."""

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0, max_cached: int = 32):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.max_cached = max_cached
        self._cache: Dict[Tuple[int, int, str], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoding for ``x`` [B, C, H, W] as [1, 2 * num_pos_feats, H, W] (broadcast over B)."""
        height, width = int(x.shape[-2]), int(x.shape[-1])
        key = (height, width, str(x.device))
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) >= self.max_cached:
                self._cache.pop(next(iter(self._cache)))
            cached = sine_position_encoding(height, width, self.num_pos_feats, self.temperature, device=x.device)
            self._cache[key] = cached
        return cached.to(x.dtype)
