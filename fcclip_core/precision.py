"""Numeric precision of inference: fp32, or bf16 / fp16 autocast for the heavy network parts.

Autocast covers the backbone trunk, the pixel decoder and the transformer decoder (convolutions
and matrix products: nearly all the time). FC-CLIP's probabilities stay in float32 (the
"float32 islands", listed in the README): the CLIP logits at scale 100 and their softmax, the
geometric ensemble in log space, mask pooling sums with the region head, and post-processing
scores. ``auto`` picks bf16 only where it is native and measured faster (see
``CPU_BF16_AUTO``); everything else runs fp32. TF32 (CUDA float32 matrix products on tensor
cores) is a separate switch, off by default so that fp32 on a GPU matches the CPU.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Optional

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# What ``auto`` does on a CPU with native bf16, per kind of bf16 hardware. AVX512-BF16 without
# AMX: measured slower than fp32 for ConvNeXt-L at 640x640 (README, "Precision"), so fp32.
# AMX: the trunk ran 4-5x faster in bf16 (issue 13's measurement on an AMX Xeon).
CPU_BF16_AUTO = {"amx_bf16": True, "avx512_bf16": False}


@dataclass(frozen=True)
class Precision:
    """A resolved precision: what runs, and why ``auto`` chose it."""

    name: str  # fp32 | bf16 | fp16
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        """The autocast dtype, None for fp32 (no autocast at all)."""
        return None if self.name == "fp32" else self.dtype


def cpu_bf16_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The native bf16 features this CPU advertises (``amx_bf16``, ``avx512_bf16``), read from
    the kernel's CPU flags; empty where they cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return frozenset(flags & set(CPU_BF16_AUTO))
    return frozenset()


def resolve_precision(precision: str, device: torch.device | str,
                      cpu_features: Optional[frozenset[str]] = None) -> Precision:
    """``precision`` (fp32 | bf16 | fp16 | auto) for ``device``; explicit choices are kept."""
    text = str(precision).strip().lower()
    if text not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    if text != "auto":
        if dev.type == "cuda" and text == "bf16" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision bf16 requested but {torch.cuda.get_device_name(dev)} has no bf16")
        return Precision(text, "requested")
    if dev.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", f"auto: {torch.cuda.get_device_name(dev)} supports bf16")
        return Precision("fp32", f"auto: {torch.cuda.get_device_name(dev)} has no bf16")
    features = cpu_bf16_features() if cpu_features is None else cpu_features
    faster = sorted(f for f in features if CPU_BF16_AUTO.get(f))
    if faster:
        return Precision("bf16", f"auto: CPU has {faster[0]}")
    if features:
        return Precision("fp32", f"auto: CPU has only {', '.join(sorted(features))}, "
                                 "measured slower than fp32")
    return Precision("fp32", "auto: CPU has no native bf16")


def autocast(device: torch.device | str, dtype: Optional[torch.dtype]) -> ContextManager:
    """Autocast to ``dtype`` on ``device``'s type; a no-op context for None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def float32_island(device: torch.device | str) -> ContextManager:
    """Suspend autocast inside: the code runs in the dtype of its (float32) inputs."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA float32 matrix products and convolutions (process-wide torch setting).

    Off: fp32 on a GPU computes in IEEE float32, as on a CPU. On: ~10-bit mantissa inputs
    on tensor cores, faster on Ampere and later, results drift by about 1e-3 relative.
    """
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        mode = "tf32" if enabled else "ieee"
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode
    else:
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled
