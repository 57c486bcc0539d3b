"""Native CPU op against the PyTorch reference: forward, gradients, boundaries and empty sizes."""
from __future__ import annotations

import pytest
import torch

from fcclip_core.ops import active_backend, ms_deform_attn, ms_deform_attn_reference

pytestmark = pytest.mark.usefixtures("native_cpu")

FP32_TOLERANCE = dict(rtol=0, atol=1e-5)


def assert_gradients_close(native: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    """Within 1e-5 of each gradient's scale (float32) or 1e-10 (float64).

    Location gradients carry a factor of the level size and sum over channels, so float32 rounding
    in either implementation grows with their magnitude; both stay this close to a float64 truth.
    """
    for ours, theirs in zip(native, reference):
        scale = max(1.0, theirs.abs().max().item()) if theirs.numel() else 1.0
        tolerance = 1e-5 if theirs.dtype == torch.float32 else 1e-10
        torch.testing.assert_close(ours, theirs, rtol=0, atol=tolerance * scale)

RANDOM_CASES = [
    # levels, n, queries, heads, channels, points, seed
    ([(1, 1), (3, 5), (7, 2)], 2, 9, 3, 5, 2, 0),
    ([(20, 20), (10, 10), (5, 5)], 1, 40, 8, 32, 4, 1),
    ([(2, 9)], 3, 4, 1, 1, 1, 2),
    ([(13, 1), (1, 17), (6, 6), (3, 3)], 2, 11, 2, 7, 3, 3),
]


def test_cpu_tensors_take_native_path():
    assert active_backend("cpu") == "cpu-native"


@pytest.mark.parametrize("levels, n, queries, heads, channels, points, seed", RANDOM_CASES)
def test_forward_matches_reference(problem, levels, n, queries, heads, channels, points, seed):
    args = problem(levels, n=n, queries=queries, heads=heads, channels=channels, points=points, seed=seed)
    torch.testing.assert_close(ms_deform_attn(*args), ms_deform_attn_reference(*args), **FP32_TOLERANCE)


@pytest.mark.parametrize("levels, n, queries, heads, channels, points, seed", RANDOM_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_match_reference_autograd(problem, gradients, levels, n, queries, heads, channels, points, seed, dtype):
    args = problem(levels, n=n, queries=queries, heads=heads, channels=channels, points=points, seed=seed, dtype=dtype)
    assert_gradients_close(gradients(ms_deform_attn, args), gradients(ms_deform_attn_reference, args))


def test_gradcheck_float64(problem):
    args = problem([(3, 5), (1, 1), (4, 2)], n=2, queries=3, heads=2, channels=3, points=2, dtype=torch.float64)
    leaves = tuple(t.requires_grad_() if t.is_floating_point() else t for t in args)
    assert torch.autograd.gradcheck(ms_deform_attn, leaves, eps=1e-6, atol=1e-6)


def boundary_locations(width: int, height: int) -> torch.Tensor:
    """Points on and around the map edges, in pixels: at -1 and size all corners are off the map."""
    pixel_x = torch.tensor([-3.0, -1.0, -0.75, -0.5, 0.0, width - 1.0, width - 0.5, width - 0.25, width + 0.0, 1e6])
    pixel_y = torch.tensor([-1e6, -1.0, -0.5, -0.2, 0.0, height - 1.0, height - 0.5, height - 0.1, height + 0.0, height + 4.0])
    xs, ys = torch.meshgrid((pixel_x + 0.5) / width, (pixel_y + 0.5) / height, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], -1)  # [100, 2] normalised


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_boundary_and_outside_points(problem, gradients, dtype):
    """Forward everywhere; gradients in float64 only: at the map border (pixel -1 or size) the location
    gradient jumps, and float32 rounding of the two coordinate formulas may land on either side."""
    levels = [(4, 3), (1, 1), (2, 5)]
    value, shapes, starts, _, _ = problem(levels, n=1, heads=2, channels=3, dtype=dtype)
    per_level = [boundary_locations(w, h) for h, w in levels]  # 100 points per level
    locations = torch.stack(per_level, 1).to(dtype)  # [100, L, 2]
    locations = locations[None, :, None, :, None, :].expand(1, 100, 2, len(levels), 1, 2).contiguous()
    weights = torch.rand(1, 100, 2, len(levels), 1, generator=torch.Generator().manual_seed(5), dtype=dtype)
    args = (value, shapes, starts, locations, weights)
    torch.testing.assert_close(ms_deform_attn(*args), ms_deform_attn_reference(*args), rtol=0, atol=1e-6)
    # Far-away points sample zeros, exactly.
    far = locations.clone()
    far[..., 0] = 1e6
    assert torch.count_nonzero(ms_deform_attn(value, shapes, starts, far, weights)) == 0
    if dtype == torch.float64:
        assert_gradients_close(gradients(ms_deform_attn, args), gradients(ms_deform_attn_reference, args))


def test_empty_level_contributes_zero(problem, gradients):
    args = problem([(3, 4), (0, 5), (2, 2), (6, 0)], n=2, queries=7, spread=0.5)
    out = ms_deform_attn(*args)
    torch.testing.assert_close(out, ms_deform_attn_reference(*args), **FP32_TOLERANCE)
    value, shapes, starts, locations, weights = args
    silenced = weights.clone()
    silenced[:, :, :, [1, 3]] = 0
    torch.testing.assert_close(out, ms_deform_attn(value, shapes, starts, locations, silenced), rtol=0, atol=0)
    grads = gradients(ms_deform_attn, args)
    assert torch.count_nonzero(grads[1][:, :, :, [1, 3]]) == 0  # no location gradient on empty levels
    assert torch.count_nonzero(grads[2][:, :, :, [1, 3]]) == 0
    assert_gradients_close(grads, gradients(ms_deform_attn_reference, args))


@pytest.mark.parametrize(
    "sizes",
    [dict(queries=0), dict(n=0), dict(points=0), dict(channels=0), dict(heads=0)],
    ids=["Lq=0", "N=0", "P=0", "D=0", "M=0"],
)
def test_zero_size_inputs(problem, gradients, sizes):
    args = problem([(3, 4), (2, 2)], **sizes)
    out = ms_deform_attn(*args)
    reference = ms_deform_attn_reference(*args)
    assert out.shape == reference.shape
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    for native, ref, leaf in zip(gradients(ms_deform_attn, args), gradients(ms_deform_attn_reference, args),
                                 [args[0], args[3], args[4]]):
        assert native.shape == leaf.shape
        torch.testing.assert_close(native, ref, rtol=0, atol=0)


def test_no_levels_gives_zeros(problem):
    args = problem([], queries=3)
    out = ms_deform_attn(*args)
    assert out.shape == (2, 3, 12) and torch.count_nonzero(out) == 0


def test_thread_count_does_not_change_results(problem, gradients):
    args = problem([(20, 20), (10, 10), (5, 5)], n=2, queries=64, heads=8, channels=32, points=4, spread=0.1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = [ms_deform_attn(*args), *gradients(ms_deform_attn, args)]
        torch.set_num_threads(2)
        double = [ms_deform_attn(*args), *gradients(ms_deform_attn, args)]
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(single, double):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_inconsistent_levels_are_rejected(problem):
    value, shapes, starts, locations, weights = problem([(3, 4), (2, 2)])
    with pytest.raises(RuntimeError, match="does not fit"):
        ms_deform_attn(value[:, :-1], shapes, starts, locations, weights)
    with pytest.raises(RuntimeError, match="does not fit"):
        ms_deform_attn(value, shapes, starts + 1, locations, weights)
