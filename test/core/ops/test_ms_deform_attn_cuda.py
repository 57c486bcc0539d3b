"""CUDA op against the PyTorch reference (runs only where a GPU and a CUDA build of the op exist)."""
from __future__ import annotations

import pytest
import torch

from fcclip_core.ops import active_backend, ms_deform_attn, ms_deform_attn_reference
from fcclip_core.ops.extension import native_ops

CASES = [
    ([(1, 1), (3, 5), (7, 2)], dict(n=2, queries=9, heads=3, channels=5, points=2, spread=0.5)),
    ([(20, 20), (10, 10), (5, 5)], dict(n=1, queries=300, heads=8, channels=32, points=4, spread=0.2)),
    ([(3, 4), (0, 5), (2, 2)], dict(n=2, queries=7, spread=0.5)),
]


@pytest.fixture(scope="module", autouse=True)
def cuda_op() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if not native_ops().has_cuda:
        pytest.fail(f"a GPU is present but the op has no CUDA kernels ({native_ops().origin})")
    assert active_backend("cuda") == "cuda"


def on_gpu(args, dtype=None):
    return tuple(t.to("cuda", dtype if (dtype and t.is_floating_point()) else t.dtype) for t in args)


@pytest.mark.parametrize("levels, sizes", CASES)
def test_forward_and_gradients_match_reference(problem, gradients, levels, sizes):
    args = problem(levels, **sizes)
    gpu = on_gpu(args)
    torch.testing.assert_close(ms_deform_attn(*gpu).cpu(), ms_deform_attn_reference(*args), rtol=0, atol=1e-5)
    for ours, theirs in zip(gradients(ms_deform_attn, gpu), gradients(ms_deform_attn_reference, args)):
        scale = max(1.0, theirs.abs().max().item()) if theirs.numel() else 1.0
        torch.testing.assert_close(ours.cpu(), theirs, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 1e-2), (torch.bfloat16, 4e-2)])
def test_half_precision_forward_and_backward(problem, gradients, dtype, tolerance):
    """Against the float32 reference on the same rounded inputs: only the kernel's own rounding counts."""
    levels, sizes = CASES[1]
    reduced = on_gpu(problem(levels, **sizes), dtype)
    widened = tuple(t.cpu().float() if t.is_floating_point() else t.cpu() for t in reduced)
    out = ms_deform_attn(*reduced)
    assert out.dtype == dtype
    expected = ms_deform_attn_reference(*widened)
    scale = expected.abs().max().item()
    torch.testing.assert_close(out.float().cpu(), expected, rtol=0, atol=tolerance * scale)
    for ours, theirs in zip(gradients(ms_deform_attn, reduced), gradients(ms_deform_attn_reference, widened)):
        assert ours.dtype == dtype
        scale = max(1e-3, theirs.abs().max().item())
        torch.testing.assert_close(ours.float().cpu(), theirs, rtol=0, atol=tolerance * scale)


def test_gradcheck_float64(problem):
    args = problem([(3, 5), (1, 1), (4, 2)], n=2, queries=3, heads=2, channels=3, points=2, dtype=torch.float64)
    leaves = tuple(t.cuda().requires_grad_() if t.is_floating_point() else t.cuda() for t in args)
    assert torch.autograd.gradcheck(ms_deform_attn, leaves, eps=1e-6, atol=1e-6)


def test_zero_size_inputs(problem):
    for sizes in (dict(queries=0), dict(n=0), dict(points=0)):
        args = problem([(3, 4), (2, 2)], **sizes)
        torch.testing.assert_close(ms_deform_attn(*on_gpu(args)).cpu(), ms_deform_attn_reference(*args))


def test_non_contiguous_inputs(problem):
    """Views with strides (a transposed value, sliced locations) give the contiguous result."""
    value, shapes, starts, locations, weights = on_gpu(problem([(6, 5), (3, 2)], n=2, queries=11))
    strided_value = value.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    wide = torch.cat([locations, locations], -1)[..., :2]  # same values, every other column
    assert not strided_value.is_contiguous() and not wide.is_contiguous()
    expected = ms_deform_attn(value, shapes, starts, locations, weights)
    torch.testing.assert_close(ms_deform_attn(strided_value, shapes, starts, wide, weights), expected,
                               rtol=0, atol=0)
