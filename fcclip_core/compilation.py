"""Optional ``torch.compile`` of the network's heavy parts, for a fixed input size.

Off by default: compiling costs start-up time (tens of seconds to minutes) that a robot would
notice at every launch, and whether it pays off has not been measured on a GPU yet.
``reduce-overhead`` also captures CUDA graphs on a GPU (one replay per frame instead of
hundreds of kernel launches); it suits a camera whose frame size never changes. Each new
input size recompiles.
"""
from __future__ import annotations

import torch

from fcclip_core.modeling.fcclip import FCCLIP

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


def compile_network(model: FCCLIP, mode: str) -> None:
    """Compile the backbone features, the pixel decoder and the transformer decoder in place."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}: use one of {', '.join(COMPILE_MODES)}")
    if mode == "off":
        return
    head = model.sem_seg_head
    for owner, name in ((model.backbone, "extract_features"), (head.pixel_decoder, "forward"),
                        (head.predictor, "forward")):
        setattr(owner, name, torch.compile(getattr(owner, name), mode=mode, dynamic=False))
