"""Pinhole intrinsics of the colour camera, validated, and rescaled to another image size.

A depth image registered to the colour image shares its intrinsics; when the depth or the label
image has another resolution, the same camera is described by scaled intrinsics. Pixel centres
are at integer coordinates (the ROS ``camera_info`` convention), so scaling an image by ``s``
maps a principal point ``c`` to ``(c + 0.5) * s - 0.5``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

ASPECT_TOLERANCE = 0.01  # relative: two sizes describe the same camera within this


class IntrinsicsError(ValueError):
    """Unusable intrinsics (zero focal length, wrong size, ...); the message says what."""


@dataclass(frozen=True)
class PinholeIntrinsics:
    """fx, fy, cx, cy in pixels of an image of ``width`` x ``height`` pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values):
            raise IntrinsicsError(f"intrinsics must be finite, got fx, fy, cx, cy = {values}")
        if self.fx <= 0 or self.fy <= 0:
            raise IntrinsicsError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.width < 1 or self.height < 1:
            raise IntrinsicsError(f"image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_k(cls, k: Sequence[float] | np.ndarray, width: int, height: int) -> PinholeIntrinsics:
        """From a row-major 3x3 camera matrix K (``camera_info.k``): [fx 0 cx; 0 fy cy; 0 0 1]."""
        matrix = np.asarray(k, dtype=np.float64).reshape(-1)
        if matrix.size != 9:
            raise IntrinsicsError(f"K must have 9 entries, got {matrix.size}")
        if not matrix.any():
            raise IntrinsicsError("K is all zeros: the camera is not calibrated")
        if matrix[8] == 0 or not np.isfinite(matrix).all():
            raise IntrinsicsError(f"K must be finite with K[2][2] != 0, got {matrix.tolist()}")
        matrix = matrix / matrix[8]
        return cls(fx=float(matrix[0]), fy=float(matrix[4]), cx=float(matrix[2]),
                   cy=float(matrix[5]), width=int(width), height=int(height))

    def scaled_to(self, width: int, height: int) -> PinholeIntrinsics:
        """The same camera for an image resized to ``width`` x ``height``.

        Raises ``IntrinsicsError`` when the aspect ratio differs (a crop or a wrong
        ``camera_info``, not a resize).
        """
        check_same_aspect((self.height, self.width), (height, width), "camera_info", "image")
        if (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        return PinholeIntrinsics(fx=self.fx * sx, fy=self.fy * sy, cx=(self.cx + 0.5) * sx - 0.5,
                                 cy=(self.cy + 0.5) * sy - 0.5, width=int(width), height=int(height))


def check_same_aspect(a_hw: tuple[int, int], b_hw: tuple[int, int], a_name: str,
                      b_name: str) -> None:
    """Raise ``IntrinsicsError`` unless the two (height, width) sizes are a resize of each other."""
    (ah, aw), (bh, bw) = a_hw, b_hw
    if min(ah, aw, bh, bw) < 1:
        raise IntrinsicsError(f"sizes must be positive: {a_name} {aw}x{ah}, {b_name} {bw}x{bh}")
    if abs((aw / ah) / (bw / bh) - 1.0) > ASPECT_TOLERANCE:
        raise IntrinsicsError(f"{a_name} is {aw}x{ah} but {b_name} is {bw}x{bh}: not the same "
                              "camera at another resolution")
