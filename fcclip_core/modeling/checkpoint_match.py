"""Which shipped model a checkpoint belongs to, judged by its tensor names and shapes.

A checkpoint of another model (the ResNet-50 weights given to the ConvNeXt-L config, say) fails
to load with hundreds of missing and mis-shaped tensors; naming the model the file does fit
turns that into a one-line fix. The shipped models are built on the meta device, so comparing
against all of them costs no memory and is only done when a load has already failed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from fcclip_core.checkpoint import KNOWN_UNUSED_KEYS
from fcclip_core.config import available_model_configs

# A checkpoint "looks like" a model when at least this fraction of both sides agree.
MIN_FIT = 0.9


@dataclass(frozen=True)
class ModelFit:
    config: str  # shipped model config name
    fraction: float  # min(share of the model's tensors found with its shape, share of the file's tensors used)


def shape_fit(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> float:
    """How well ``state`` fills a model whose tensors are ``expected``: 1.0 is a perfect fit."""
    tensors = {k: v for k, v in state.items() if k not in KNOWN_UNUSED_KEYS}
    if not tensors or not expected:
        return 0.0
    same = sum(1 for k, v in tensors.items() if k in expected and tuple(v.shape) == tuple(expected[k].shape))
    return min(same / len(expected), same / len(tensors))


def closest_shipped_model(state: Mapping[str, torch.Tensor], exclude: str | None = None) -> ModelFit | None:
    """The shipped model config that ``state`` fits best, when it fits at least MIN_FIT; else None."""
    from fcclip_core.modeling.build import build_empty_model

    best: ModelFit | None = None
    for name in available_model_configs():
        if name == exclude:
            continue
        expected = build_empty_model(name).state_dict(keep_vars=True)
        fit = ModelFit(name, shape_fit(state, expected))
        if best is None or fit.fraction > best.fraction:
            best = fit
    return best if best is not None and best.fraction >= MIN_FIT else None
