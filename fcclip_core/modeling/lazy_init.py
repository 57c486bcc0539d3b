"""Build modules without allocating or initialising their parameters.

The ConvNeXt-L CLIP holds 1.4 GB of parameters that a checkpoint overwrites right away; random
init would cost seconds and a second copy in memory. Inside ``parameters_on_meta()`` every
parameter created by the current thread is placed on the meta device (init functions become
no-ops) while buffers that constructors compute (e.g. the text tower's causal mask) stay real,
so loading a state dict with ``assign=True`` completes the module. Other threads building
modules at the same time are not affected.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from torch import nn

_STATE = threading.local()
_INSTALL_LOCK = threading.Lock()
_ORIGINAL_REGISTER = nn.Module.register_parameter


def _register_parameter(module: nn.Module, name: str, param) -> None:
    if getattr(_STATE, "depth", 0) and param is not None and param.device.type != "meta":
        param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
    _ORIGINAL_REGISTER(module, name, param)


def _install() -> None:
    with _INSTALL_LOCK:
        if nn.Module.register_parameter is not _register_parameter:
            nn.Module.register_parameter = _register_parameter


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Register every parameter this thread creates inside the block on the meta device."""
    _install()
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1


def meta_parameter_names(module: nn.Module) -> list[str]:
    """Parameters and buffers still without storage (not filled by a checkpoint)."""
    names = [n for n, p in module.named_parameters() if p.device.type == "meta"]
    names += [n for n, b in module.named_buffers() if b.device.type == "meta"]
    return names
