"""The one entry point: native CUDA op, native CPU op or the PyTorch reference, chosen per device.

``FCCLIP_MSDA_BACKEND`` = ``auto`` (default: native when available, else reference),
``native`` (fail loudly when the native op is unavailable) or ``reference``.
"""
from __future__ import annotations

import logging
import os

import torch
from torch.autograd.function import once_differentiable

from fcclip_core.ops.extension import native_ops
from fcclip_core.ops.reference import ms_deform_attn_reference

LOG = logging.getLogger("fcclip_core.ops")
BACKEND_ENV = "FCCLIP_MSDA_BACKEND"
BACKEND_CHOICES = ("auto", "native", "reference")
# dtypes the native kernels are compiled for; anything else takes the reference path
NATIVE_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float16, torch.bfloat16, torch.float32, torch.float64),
}
_announced: set[str] = set()


def requested_backend() -> str:
    choice = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice not in BACKEND_CHOICES:
        raise ValueError(f"{BACKEND_ENV}={choice!r}: expected one of {', '.join(BACKEND_CHOICES)}")
    return choice


def active_backend(device: torch.device | str) -> str:
    """Which path runs for tensors on ``device``: "cuda", "cpu-native" or "reference".

    Logs the choice once per device type. With ``FCCLIP_MSDA_BACKEND=native`` an unavailable
    native op is an error instead of a silent fallback.
    """
    kind = torch.device(device).type
    choice = requested_backend()
    if choice == "reference":
        backend, why = "reference", f"forced by {BACKEND_ENV}=reference"
    else:
        ops = native_ops()
        if kind == "cpu" and ops.module is not None:
            backend, why = "cpu-native", ops.origin
        elif kind == "cuda" and ops.has_cuda:
            backend, why = "cuda", ops.origin
        elif ops.module is None:
            backend, why = "reference", f"native op unavailable: {ops.origin}"
        else:
            backend, why = "reference", f"native op ({ops.origin}) has no {kind} kernel"
        if choice == "native" and backend == "reference":
            raise RuntimeError(f"{BACKEND_ENV}=native but no native op serves {kind} tensors ({why})")
    if kind not in _announced:
        _announced.add(kind)
        LOG.info("fcclip_core.ops: multi-scale deformable attention on %s uses the %s path (%s)", kind, backend, why)
    return backend


def ms_deform_attn(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Multi-scale deformable attention on the fastest available path.

    value [N, S, M, D] (S = sum of H_l * W_l); spatial_shapes [L, 2] int64 rows (H_l, W_l);
    level_start_index [L] int64; sampling_locations [N, Lq, M, L, P, 2] normalised (x, y), may lie
    outside [0, 1] (those taps read zeros); attention_weights [N, Lq, M, L, P]. Returns
    [N, Lq, M * D] in the promoted float dtype of the three, differentiable w.r.t. each of them.
    """
    check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    # Mixed float dtypes (autocast: half values, float locations) compute in the promoted dtype.
    dtype = torch.promote_types(torch.promote_types(value.dtype, sampling_locations.dtype), attention_weights.dtype)
    value, sampling_locations, attention_weights = (t.to(dtype) for t in (value, sampling_locations, attention_weights))
    backend = active_backend(value.device)
    if backend == "reference" or value.dtype not in NATIVE_DTYPES.get(value.device.type, ()):
        if requested_backend() == "native" and backend != "reference":
            raise RuntimeError(f"{BACKEND_ENV}=native: the native op has no {value.dtype} kernel on {value.device.type}")
        return ms_deform_attn_reference(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    device = value.device
    if device.type != "cpu" and spatial_shapes.device.type == "cpu" and level_start_index.device.type == "cpu":
        # The GPU kernels trust the level table; check it while that is free (no device sync).
        check_levels_fit(spatial_shapes, level_start_index, value.shape[1])
    return _NativeMSDeformAttn.apply(
        value.contiguous(),
        spatial_shapes.to(device=device, dtype=torch.int64).contiguous(),
        level_start_index.to(device=device, dtype=torch.int64).contiguous(),
        sampling_locations.contiguous(),
        attention_weights.contiguous(),
    )


class _NativeMSDeformAttn(torch.autograd.Function):
    """Autograd glue around the extension's forward and backward kernels."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        ops = native_ops().module
        output = ops.ms_deform_attn_forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        ops = native_ops().module
        grad_value, grad_locations, grad_weights = ops.ms_deform_attn_backward(
            *ctx.saved_tensors, grad_output.contiguous()
        )
        return grad_value, None, None, grad_locations, grad_weights


def check_levels_fit(spatial_shapes: torch.Tensor, level_start_index: torch.Tensor, pixels: int) -> None:
    """Every level (H, W) starting at its index lies inside value's S pixels (CPU tensors)."""
    for level, ((height, width), start) in enumerate(zip(spatial_shapes.tolist(), level_start_index.tolist())):
        if height < 0 or width < 0 or start < 0 or start + height * width > pixels:
            raise ValueError(
                f"ms_deform_attn: level {level} ({height}x{width} from pixel {start}) does not fit in value's {pixels} pixels"
            )


def check_inputs(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> None:
    """Shape, dtype and device checks that need no device synchronisation, with readable errors."""
    if value.dim() != 4:
        raise ValueError(f"value must be [N, S, M, D], got shape {tuple(value.shape)}")
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(f"sampling_locations must be [N, Lq, M, L, P, 2], got shape {tuple(sampling_locations.shape)}")
    n, _, heads, _ = value.shape
    n_loc, queries, heads_loc, levels, points, _ = sampling_locations.shape
    if (n_loc, heads_loc) != (n, heads):
        raise ValueError(
            f"sampling_locations {tuple(sampling_locations.shape)} disagrees with value {tuple(value.shape)} on N or M"
        )
    if tuple(attention_weights.shape) != (n, queries, heads, levels, points):
        raise ValueError(
            f"attention_weights must be {(n, queries, heads, levels, points)}, got {tuple(attention_weights.shape)}"
        )
    if spatial_shapes.dim() != 2 or tuple(spatial_shapes.shape) != (levels, 2):
        raise ValueError(f"spatial_shapes must be [L={levels}, 2], got shape {tuple(spatial_shapes.shape)}")
    if tuple(level_start_index.shape) != (levels,):
        raise ValueError(f"level_start_index must be [L={levels}], got shape {tuple(level_start_index.shape)}")
    for name, index in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got {index.dtype}")
    if not value.dtype.is_floating_point:
        raise TypeError(f"value must be floating point, got {value.dtype}")
    for name, tensor in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        if not tensor.dtype.is_floating_point:
            raise TypeError(f"{name} must be floating point, got {tensor.dtype}")
    if sampling_locations.device != value.device or attention_weights.device != value.device:
        raise ValueError(
            "value, sampling_locations and attention_weights must be on one device, got "
            f"{value.device}, {sampling_locations.device}, {attention_weights.device}"
        )
