"""Build modules without allocating or initialising their parameters.

The ConvNeXt-L CLIP holds 1.4 GB of parameters that a checkpoint overwrites right away; random
init would cost seconds and a second copy in memory. Inside ``parameters_on_meta()`` every
parameter is created on the meta device (init functions become no-ops) while buffers that
constructors compute (e.g. the text tower's causal mask) stay real, so loading a state dict with
``assign=True`` completes the module.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch
from torch import nn

_LOCK = threading.Lock()


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Register every parameter created in this block on the meta device."""
    with _LOCK:
        original = nn.Module.register_parameter

        def register_on_meta(module: nn.Module, name: str, param) -> None:
            if param is not None and param.device.type != "meta":
                param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
            original(module, name, param)

        nn.Module.register_parameter = register_on_meta
        try:
            yield
        finally:
            nn.Module.register_parameter = original


def meta_parameter_names(module: nn.Module) -> list[str]:
    """Parameters and buffers still without storage (not filled by a checkpoint)."""
    names = [n for n, p in module.named_parameters() if p.device.type == "meta"]
    names += [n for n, b in module.named_buffers() if b.device.type == "meta"]
    return names


def has_meta_tensors(module: nn.Module) -> bool:
    return any(t.device.type == "meta" for t in module.parameters()) or any(
        t.device.type == "meta" for t in module.buffers())

