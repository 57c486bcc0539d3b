"""The PyTorch reference against a direct, loop-by-loop reading of the op's definition."""
from __future__ import annotations

import math

import torch

from fcclip_core.ops import ms_deform_attn_reference


def _bilinear(level: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample [H, W, D] at normalised (x, y): pixel centres at (i + 0.5) / size, zeros outside."""
    height, width, channels = level.shape
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(channels, dtype=level.dtype)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                out += wx * wy * level[yy, xx]
    return out


def _direct(value, shapes, starts, locations, weights) -> torch.Tensor:
    n, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = locations.shape
    out = torch.zeros(n, queries, heads, channels, dtype=value.dtype)
    for b in range(n):
        for q in range(queries):
            for m in range(heads):
                for lvl in range(levels):
                    h, w = (int(s) for s in shapes[lvl])
                    start = int(starts[lvl])
                    level = value[b, start : start + h * w, m].reshape(h, w, channels)
                    for p in range(points):
                        x, y = (float(c) for c in locations[b, q, m, lvl, p])
                        out[b, q, m] += weights[b, q, m, lvl, p] * _bilinear(level, x, y)
    return out.reshape(n, queries, heads * channels)


def test_reference_matches_direct_definition(problem):
    args = problem([(3, 5), (1, 1), (7, 2)], dtype=torch.float64, spread=0.4)
    torch.testing.assert_close(ms_deform_attn_reference(*args), _direct(*args), rtol=0, atol=1e-12)


def test_reference_reads_pixel_centres_exactly(problem):
    value, shapes, starts, _, _ = problem([(4, 6)], n=1, queries=1, heads=1, dtype=torch.float64)
    row, col = 2, 5
    centre = torch.tensor([(col + 0.5) / 6, (row + 0.5) / 4], dtype=torch.float64)
    locations = centre.view(1, 1, 1, 1, 1, 2)
    weights = torch.ones(1, 1, 1, 1, 1, dtype=torch.float64)
    out = ms_deform_attn_reference(value, shapes, starts, locations, weights)
    torch.testing.assert_close(out[0, 0], value[0, row * 6 + col, 0], rtol=0, atol=1e-12)


def test_reference_empty_level_contributes_zero(problem):
    value, shapes, starts, locations, weights = problem([(3, 4), (0, 5), (2, 2)], dtype=torch.float64)
    out = ms_deform_attn_reference(value, shapes, starts, locations, weights)
    kept = weights.clone()
    kept[:, :, :, 1] = 0  # zeroing the empty level's weights must change nothing
    torch.testing.assert_close(out, ms_deform_attn_reference(value, shapes, starts, locations, kept), rtol=0, atol=0)
    torch.testing.assert_close(out, _direct(value, shapes, starts, locations, weights), rtol=0, atol=1e-12)
