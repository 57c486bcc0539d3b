"""Depth images to metres, and nearest resampling onto the label image's pixel grid."""
from __future__ import annotations

import numpy as np

from fcclip_core.spatial.intrinsics import check_same_aspect

MILLIMETRES = 0.001  # metres per unit of a 16-bit depth image (the ROS 16UC1 convention)


class DepthError(ValueError):
    """A depth image that cannot be used; the message says why."""


def depth_in_metres(depth: np.ndarray, depth_scale: float = 0.0) -> np.ndarray:
    """Float32 metres from a [H, W] depth image.

    ``depth_scale`` is metres per stored unit; 0 picks the ROS convention from the dtype
    (uint16: millimetres, float: metres). Invalid values (0, NaN, inf) are kept as they are:
    the geometry ignores them.
    """
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise DepthError(f"depth must be a [H, W] image, got shape {depth.shape}")
    if depth_scale < 0 or not np.isfinite(depth_scale):
        raise DepthError(f"depth_scale must be >= 0 (0: from the encoding), got {depth_scale}")
    if np.issubdtype(depth.dtype, np.integer):
        scale = depth_scale or MILLIMETRES
    elif np.issubdtype(depth.dtype, np.floating):
        scale = depth_scale or 1.0
    else:
        raise DepthError(f"depth must hold integers or floats, got {depth.dtype}")
    metres = depth.astype(np.float32)
    if scale != 1.0:
        metres *= np.float32(scale)
    return metres


def resample_nearest(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w] -> [height, width] by nearest neighbour (pixel centres aligned), never blending
    depths across an edge. Raises ``DepthError`` when the aspect ratios differ."""
    h, w = depth.shape
    if (h, w) == (height, width):
        return depth
    try:
        check_same_aspect((h, w), (height, width), "depth", "label image")
    except ValueError as error:
        raise DepthError(str(error)) from None
    return sample_nearest(depth, height, width)


def sample_nearest(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w, ...] -> [height, width, ...]: each output pixel takes the input pixel under its
    centre. No aspect check: the caller decides what a valid grid is."""
    h, w = values.shape[:2]
    rows = np.minimum(((np.arange(height) + 0.5) * (h / height)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * (w / width)).astype(np.int64), w - 1)
    return values[rows[:, None], cols[None, :]]
