"""Sine positional encoding: the DETR definition, cached per grid size."""
from __future__ import annotations

import math

import torch

from fcclip_core.modeling.position_encoding import PositionEmbeddingSine, sine_position_encoding


def _by_definition(height: int, width: int, feats: int) -> torch.Tensor:
    """Element by element: channel c < feats encodes the row, the rest the column; even
    frequency slots take sin, odd ones cos; positions are 1-based, normalised to 2*pi."""
    out = torch.zeros(2 * feats, height, width, dtype=torch.float64)
    for c in range(2 * feats):
        i = c % feats
        freq = 10000 ** (2 * (i // 2) / feats)
        for r in range(height):
            for q in range(width):
                coord = (r + 1) / (height + 1e-6) if c < feats else (q + 1) / (width + 1e-6)
                phase = coord * 2 * math.pi / freq
                out[c, r, q] = math.sin(phase) if i % 2 == 0 else math.cos(phase)
    return out


def test_matches_the_definition():
    enc = sine_position_encoding(3, 5, 6)
    assert enc.shape == (1, 12, 3, 5)
    assert torch.allclose(enc[0].double(), _by_definition(3, 5, 6), atol=1e-6)


def test_module_caches_per_size_and_broadcasts_over_the_batch():
    layer = PositionEmbeddingSine(4)
    a = layer(torch.zeros(2, 7, 4, 6))
    b = layer(torch.zeros(1, 7, 4, 6))
    assert a is b and a.shape == (1, 8, 4, 6)
    c = layer(torch.zeros(1, 7, 5, 6))
    assert c.shape == (1, 8, 5, 6) and len(layer._cache) == 2
