"""Random deformable-attention problems shared by the op tests."""
from __future__ import annotations

import os
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


def with_grad(args: Problem) -> Problem:
    """Leaf copies of the float inputs that record gradients (index tensors pass through)."""
    return tuple(t.detach().clone().requires_grad_() if t.is_floating_point() else t for t in args)  # type: ignore


def input_gradients(fn: Callable[..., torch.Tensor], args: Problem, seed: int = 1) -> list[torch.Tensor]:
    """d <out, random cotangent> / d (value, sampling_locations, attention_weights) through ``fn``."""
    leaves = with_grad(args)
    out = fn(*leaves)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.device, out.dtype)
    out.backward(cotangent)
    return [t.grad if t.grad is not None else torch.zeros_like(t) for t in leaves if t.is_floating_point()]


@pytest.fixture
def gradients() -> Callable[..., list[torch.Tensor]]:
    return input_gradients


@pytest.fixture(scope="session")
def native_cpu() -> None:
    """Require the native CPU op: skip visibly where it cannot be compiled, fail where it should have been."""
    from fcclip_core.ops.dispatch import BACKEND_ENV
    from fcclip_core.ops.extension import native_ops

    if os.environ.get(BACKEND_ENV, "auto") == "reference":
        pytest.skip(f"{BACKEND_ENV}=reference disables the native op")
    ops = native_ops()
    if ops.module is None:
        if "failed" in ops.origin:
            pytest.fail(f"the native op should build here but did not: {ops.origin}")
        pytest.skip(f"native op unavailable: {ops.origin}")
