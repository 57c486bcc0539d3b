"""Moving camera frames to the inference device: the uint8 image crosses once.

Normalising on the host and uploading float32 would move four times the bytes; here the
resized uint8 image is copied into a reusable page-locked (pinned) buffer, from which the copy
to the GPU is a direct DMA that does not block the host. Normalisation and padding then run on
the device. On a CPU nothing is copied.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch


class PinnedStaging:
    """One reusable pinned host buffer for uploads to a CUDA device.

    Pinning memory is slow (a driver call), so the buffer is allocated once and grown only when
    a larger frame comes. Before it is overwritten, the previous upload from it is waited for.
    """

    def __init__(self) -> None:
        self._buffer: Optional[torch.Tensor] = None
        self._done: Optional[torch.cuda.Event] = None

    def upload(self, image: np.ndarray, device: torch.device) -> torch.Tensor:
        """``image`` (any shape, uint8) as a tensor on ``device``; the copy is asynchronous."""
        flat = np.ascontiguousarray(image).reshape(-1)
        if self._done is not None:
            self._done.synchronize()
        if self._buffer is None or self._buffer.numel() < flat.size:
            self._buffer = torch.empty(flat.size, dtype=torch.uint8, pin_memory=True)
        staged = self._buffer[:flat.size]
        staged.numpy()[:] = flat
        on_device = staged.to(device, non_blocking=True)
        self._done = torch.cuda.Event()
        self._done.record(torch.cuda.current_stream(device))
        return on_device.view(image.shape)


def image_to_device(image: np.ndarray, device: torch.device,
                    staging: Optional[PinnedStaging] = None) -> torch.Tensor:
    """An H x W x 3 uint8 image as a 3 x H x W uint8 tensor on ``device`` (a view, no copy, on
    a CPU; through ``staging``'s pinned buffer on a GPU when given)."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected an H x W x C uint8 image, got {image.dtype} {image.shape}")
    if device.type == "cuda" and staging is not None:
        pixels = staging.upload(image, device)
    else:
        pixels = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    return pixels.permute(2, 0, 1)
