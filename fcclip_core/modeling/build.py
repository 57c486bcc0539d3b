"""Build FC-CLIP models from configs, with or without weights.

``build_model(config, weights=..., clip_pretrained=...)`` creates the parameters on the meta
device (no random init, no memory) and assigns the checkpoint tensors to them, so the model is
built once and holds one copy of its weights. Without weights the model gets the usual random
init (tests, training from scratch).

``model_registry`` maps the shipped config names to builders:
``model_registry["convnext_large"](weights="fcclip_cocopan.pth", clip_pretrained="open_clip_model.bin")``.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import torch

from fcclip_core.checkpoint import CheckpointError, CheckpointSource, load_checkpoint, read_state_dict
from fcclip_core.config import ModelConfig, available_model_configs, load_model_config
from fcclip_core.modeling.fcclip import FCCLIP
from fcclip_core.modeling.lazy_init import meta_parameter_names, parameters_on_meta

ConfigLike = Union[ModelConfig, str, Path]


def resolve_config(config: ConfigLike) -> ModelConfig:
    return config if isinstance(config, ModelConfig) else load_model_config(config)


def build_empty_model(config: ConfigLike) -> FCCLIP:
    """The model with every parameter on the meta device: structure and shapes, no storage."""
    with parameters_on_meta():
        return FCCLIP(resolve_config(config))


def build_model(
    config: ConfigLike,
    weights: Optional[CheckpointSource] = None,
    clip_pretrained: Optional[CheckpointSource] = None,
    *,
    device: Union[str, torch.device] = "cpu",
    strict: bool = True,
) -> FCCLIP:
    """An inference-ready FC-CLIP model (eval mode, frozen CLIP, on ``device``).

    ``weights``: an FC-CLIP checkpoint (path or state dict); ``clip_pretrained``: open_clip
    weights for CLIP keys the checkpoint lacks. The load report is ``model.load_report``.
    """
    cfg = resolve_config(config)
    if weights is None:
        if clip_pretrained is not None:
            raise ValueError("clip_pretrained only completes a checkpoint: give weights too")
        model = FCCLIP(cfg)
        report = None
    else:
        model = build_empty_model(cfg)
        state = read_state_dict(weights)
        try:
            report = load_checkpoint(model, state, clip_pretrained, strict=strict, config_name=cfg.name)
        except CheckpointError as error:
            raise _with_model_hint(error, state, model, cfg.name) from None
        unfilled = meta_parameter_names(model)
        if unfilled:
            raise CheckpointError(f"{len(unfilled)} tensors were not filled by the checkpoint: {unfilled[:8]}")
    model = model.to(device)
    model.load_report = report
    return model.prepare_for_inference()


def _with_model_hint(error: CheckpointError, state: dict, model: FCCLIP, config_name: str) -> CheckpointError:
    """``error``, or, when the file fits another shipped model better, an error naming that model.

    The generic failure text suggests missing CLIP weights, which misleads when the whole file
    belongs to a different model.
    """
    from fcclip_core.modeling.checkpoint_match import closest_shipped_model, shape_fit

    fit = closest_shipped_model(state, exclude=config_name)
    if fit is None or fit.fraction <= shape_fit(state, model.state_dict(keep_vars=True)):
        return error
    return CheckpointError(
        f"this is not a checkpoint of the model {config_name!r}: its tensors fit the shipped model "
        f"{fit.config!r} ({fit.fraction:.0%} of names and shapes agree). Use that model config "
        f"(model_config:={fit.config} for the node, --model-config {fit.config} for fcclip-segment) or the "
        f"checkpoint of {config_name!r}.")


def _registered_builder(name: str) -> Callable[..., FCCLIP]:
    @functools.wraps(build_model)
    def builder(weights: Optional[CheckpointSource] = None, clip_pretrained: Optional[CheckpointSource] = None,
                **kwargs) -> FCCLIP:
        return build_model(name, weights, clip_pretrained, **kwargs)

    builder.__doc__ = f"Build the ``{name}`` FC-CLIP model (see ``build_model``)."
    return builder


model_registry: Dict[str, Callable[..., FCCLIP]] = {name: _registered_builder(name) for name in available_model_configs()}
