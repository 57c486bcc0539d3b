"""Random deformable-attention problems shared by the op tests."""
from __future__ import annotations

from typing import Callable, Sequence

import pytest
import torch

Problem = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def make_problem(
    levels: Sequence[tuple[int, int]],
    n: int = 2,
    queries: int = 5,
    heads: int = 3,
    channels: int = 4,
    points: int = 2,
    dtype: torch.dtype = torch.float32,
    spread: float = 0.3,
    seed: int = 0,
    device: str = "cpu",
) -> Problem:
    """value, spatial_shapes, level_start_index, sampling_locations, attention_weights.

    Locations are drawn from [-spread, 1 + spread] so some taps fall partly or fully outside the map.
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(list(levels), dtype=torch.int64).reshape(-1, 2)
    areas = shapes[:, 0] * shapes[:, 1]
    starts = torch.cumsum(areas, 0) - areas
    total = int(areas.sum())
    value = torch.randn(n, total, heads, channels, generator=gen, dtype=dtype)
    locations = torch.rand(n, queries, heads, len(levels), points, 2, generator=gen, dtype=dtype)
    locations = locations * (1 + 2 * spread) - spread
    weights = torch.rand(n, queries, heads, len(levels), points, generator=gen, dtype=dtype)
    tensors = (value, shapes, starts, locations, weights)
    return tuple(t.to(device) for t in tensors)  # type: ignore[return-value]


@pytest.fixture
def problem() -> Callable[..., Problem]:
    return make_problem
