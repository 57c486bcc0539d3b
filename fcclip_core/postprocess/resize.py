"""Mask logits of the padded network input -> the original image, as the official code resizes.

``mask_logits_to_image`` is the official chain on whole tensors; ``BandResizer`` gives the same
logits for a band of output rows, so semantic inference never holds [Q, H, W] at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fcclip_core.postprocess.inputs import check_geometry, squeeze_masks

_SMALL_OUTPUT = 128  # out_h + out_w at or below which PyTorch CPU uses its separable kernel


def mask_logits_to_image(mask_logits: torch.Tensor, padded_hw: Sequence[int],
                         resized_hw: Sequence[int], output_hw: Sequence[int]) -> torch.Tensor:
    """Official resize chain: [Q, h, w] logits of the padded input -> [Q, H, W] at output size.

    Bilinear (align_corners=False) to the padded size, crop to the resized image (drop the
    padding), bilinear to the original image size. Materialises two [Q, ...] full-size
    tensors: use it on chunks of queries.
    """
    mask_logits = squeeze_masks(mask_logits, "mask_logits")
    padded, resized, output = check_geometry(padded_hw, resized_hw, output_hw)
    x = mask_logits.unsqueeze(0)
    if tuple(x.shape[-2:]) != padded:
        x = F.interpolate(x, size=padded, mode="bilinear", align_corners=False)
    x = x[:, :, : resized[0], : resized[1]]
    if resized != output:  # a same-size bilinear resize is an exact copy: skip it
        x = F.interpolate(x, size=output, mode="bilinear", align_corners=False)
    return x[0]


@dataclass(frozen=True)
class _AxisPlan:
    """Source indices and weights of a 1-D bilinear resize (align_corners=False)."""

    i0: np.ndarray  # [n_out] int64
    i1: np.ndarray
    w0: np.ndarray  # [n_out] float32
    w1: np.ndarray
    identity: bool


def _axis_plan(n_in: int, n_out: int) -> _AxisPlan:
    """PyTorch's source coordinates: src = max(0, (dst + 0.5) * n_in / n_out - 0.5), in float32.

    The CPU kernel evaluates ``scale * (dst + 0.5) - 0.5`` as one fused multiply-add; doing it
    in float64 and rounding once gives the same float32 coordinate.
    """
    d = np.arange(n_out)
    if n_in == n_out:
        return _AxisPlan(d, d, np.ones(n_out, np.float32), np.zeros(n_out, np.float32), True)
    scale = np.float64(np.float32(n_in) / np.float32(n_out))
    src = (scale * (d + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = i0 + (i0 < n_in - 1)
    return _AxisPlan(i0, i1, (np.float32(1) - lam).astype(np.float32), lam, False)


def _resample(x: torch.Tensor, dim: int, i0: np.ndarray, i1: np.ndarray, w0: np.ndarray,
              w1: np.ndarray) -> torch.Tensor:
    """out[..., j, ...] = x[..., i0[j], ...] * w0[j] + x[..., i1[j], ...] * w1[j] along ``dim``."""
    shape = [1] * x.dim()
    shape[dim] = len(i0)
    dev = x.device
    a = x.index_select(dim, torch.from_numpy(i0).to(dev))
    a.mul_(torch.from_numpy(w0).to(dev, x.dtype).view(shape))
    b = x.index_select(dim, torch.from_numpy(i1).to(dev))
    b.mul_(torch.from_numpy(w1).to(dev, x.dtype).view(shape))
    return a.add_(b)


class BandResizer:
    """``mask_logits_to_image`` restricted to a band of output rows, for all queries at once.

    Bilinear resizing is separable and local, so output rows [r0, r1) need only a few source
    rows. Step 1 (decoder resolution -> padded size) is an exact 4x upsampling, where every
    source coordinate is a dyadic fraction: running the official ``F.interpolate`` on a
    slice of source rows then gives bit-identical rows. Step 2 (crop -> output size) has an
    arbitrary ratio and is done here as a width pass then a height pass with PyTorch's
    coordinates and weights; it agrees with the full resize to float32 rounding (PyTorch's CPU
    kernel fuses multiply-adds, plain tensor ops round each product).
    """

    def __init__(self, mask_logits: torch.Tensor, padded_hw: Sequence[int],
                 resized_hw: Sequence[int], output_hw: Sequence[int]) -> None:
        self.low = squeeze_masks(mask_logits, "mask_logits")
        self.padded, self.resized, self.output = check_geometry(padded_hw, resized_hw, output_hw)
        h_in, w_in = self.low.shape[-2:]
        self.h1 = _axis_plan(h_in, self.padded[0])  # low-res rows -> padded rows
        self.w1 = _axis_plan(w_in, self.padded[1])
        self.h2 = _axis_plan(self.resized[0], self.output[0])  # crop rows -> output rows
        self.w2 = _axis_plan(self.resized[1], self.output[1])  # crop cols -> output cols
        self.sliceable = self.padded[0] == 4 * h_in

    def _padded_rows(self, c0: int, c1: int) -> torch.Tensor:
        """Rows [c0, c1) of the step-1 result, cropped to the resized width: [Q, n, w]."""
        h1, w = self.h1, self.resized[1]
        l0, l1 = int(h1.i0[c0]), int(h1.i1[c1 - 1]) + 1  # low-res rows needed
        if not self.sliceable:
            x = self.low[:, l0:l1]
            x = _resample(x, 2, self.w1.i0[:w], self.w1.i1[:w], self.w1.w0[:w], self.w1.w1[:w])
            return _resample(x, 1, h1.i0[c0:c1] - l0, h1.i1[c0:c1] - l0, h1.w0[c0:c1],
                             h1.w1[c0:c1])
        # PyTorch picks another CPU kernel when out_h + out_w <= 128: stay on the full call's side
        hp, wp = self.padded
        if hp + wp > _SMALL_OUTPUT:
            while 4 * (l1 - l0) + wp <= _SMALL_OUTPUT:
                l0, l1 = (l0, l1 + 1) if l1 < self.low.shape[1] else (l0 - 1, l1)
        x = F.interpolate(self.low[None, :, l0:l1], size=(4 * (l1 - l0), wp), mode="bilinear",
                          align_corners=False)[0]
        return x[:, c0 - 4 * l0:c1 - 4 * l0, :w]

    def rows(self, r0: int, r1: int) -> torch.Tensor:
        """Mask logits of output rows [r0, r1): [Q, r1 - r0, W]."""
        if not 0 <= r0 < r1 <= self.output[0]:
            raise ValueError(f"row band [{r0}, {r1}) outside [0, {self.output[0]})")
        h2, w2 = self.h2, self.w2
        c0, c1 = int(h2.i0[r0]), int(h2.i1[r1 - 1]) + 1  # crop (= padded) rows needed
        x = self._padded_rows(c0, c1)
        if not w2.identity:
            x = _resample(x, 2, w2.i0, w2.i1, w2.w0, w2.w1)
        if h2.identity:
            return x[:, r0 - c0:r1 - c0]
        return _resample(x, 1, h2.i0[r0:r1] - c0, h2.i1[r0:r1] - c0, h2.w0[r0:r1], h2.w1[r0:r1])
