"""Giving memory back: evict the resident pages of weights that are not needed for a while.

The CLIP text tower (about 40% of the released model's weights) is only needed when a new class
name has to be encoded. When the weights come from a file, loaded memory-mapped (an exported
``.safetensors`` or a zip ``.pth``, see ``fcclip_core.weights``), its tensors are views of that
file: asking the kernel to page them out (``madvise(MADV_PAGEOUT)``) drops them from the
process's resident memory, and the next encoding reads them back from the file, unchanged.

MADV_PAGEOUT never loses data: clean file-backed pages are simply dropped, anonymous pages
(weights built in memory) go to swap or, without swap, stay where they are. So calling it on any
tensor is safe; it only helps for file-backed ones. Linux 5.4 and later; elsewhere a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import sys
from typing import Iterable

import torch

LOG = logging.getLogger(__name__)
MADV_PAGEOUT = 21  # linux/mman.h
_PAGE = mmap.PAGESIZE


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    return libc


_LIBC = _libc()


def page_ranges(tensors: Iterable[torch.Tensor]) -> list[tuple[int, int]]:
    """Merged, page-aligned (start, end) address ranges covering the CPU tensors' data."""
    spans = []
    for tensor in tensors:
        if tensor.device.type != "cpu" or tensor.numel() == 0 or tensor.is_sparse:
            continue
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        spans.append((start // _PAGE * _PAGE, -(-end // _PAGE) * _PAGE))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def page_out(tensors: Iterable[torch.Tensor]) -> int:
    """Ask the kernel to evict the pages holding these tensors; returns the bytes advised.

    The tensors stay valid and unchanged (see the module docstring); their memory only stops
    counting as resident until it is used again. Returns 0 where the call is not available.
    """
    if _LIBC is None:
        return 0
    advised = 0
    for start, end in page_ranges(tensors):
        if _LIBC.madvise(start, end - start, MADV_PAGEOUT) != 0:
            errno = ctypes.get_errno()
            LOG.debug("madvise(MADV_PAGEOUT) failed with errno %d; leaving the pages resident", errno)
            return advised
        advised += end - start
    return advised
