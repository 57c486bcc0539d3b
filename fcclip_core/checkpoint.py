"""Load FC-CLIP checkpoints (the released detectron2 ``.pth`` files) into our model.

Our module names equal the official ones, so the key mapping is the identity (a ``module.``
prefix from distributed training is stripped). ``load_checkpoint`` reports missing,
unexpected and mis-shaped keys, and refuses (``CheckpointError``) a checkpoint that leaves the
model incomplete or belongs to another model.

The released ``fcclip_cocopan.pth`` lacks the CLIP text tower (token embedding, text
transformer, final norm; bytedance/fc-clip issue #14). Those weights are the open_clip
pretrained ones (``convnext_large_d_320`` / ``laion2b_s29b_b131k_ft_soup``): pass their file
as ``clip_pretrained`` and every model key the checkpoint lacks under ``backbone.clip_model.``
is taken from it.

Parameters are assigned, not copied (``load_state_dict(assign=True)``), so a model built with
``parameters_on_meta`` never holds a second copy of the weights.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

CLIP_PREFIX = "backbone.clip_model."
# Keys of the official model that inference never reads (the loss's class weights).
KNOWN_UNUSED_KEYS = ("criterion.empty_weight",)
# Below this fraction of matching keys the file is taken for another model's checkpoint.
MIN_MATCH_FRACTION = 0.5

StateDict = Mapping[str, torch.Tensor]
CheckpointSource = Union[str, Path, StateDict]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot (or must not) be loaded into the model; the message says why."""


@dataclass
class LoadReport:
    """What a checkpoint load did, key by key."""

    loaded: List[str] = field(default_factory=list)
    from_clip_pretrained: List[str] = field(default_factory=list)  # filled from the open_clip weights
    missing: List[str] = field(default_factory=list)  # model keys nobody supplied
    unexpected: List[str] = field(default_factory=list)  # checkpoint keys the model lacks
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)  # key, ckpt, model
    ignored: List[str] = field(default_factory=list)  # known keys unused at inference

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.from_clip_pretrained:
            lines.append(f"{len(self.from_clip_pretrained)} from the open_clip pretrained weights: "
                         + summarize_keys(self.from_clip_pretrained))
        if self.ignored:
            lines.append(f"ignored (unused at inference): {', '.join(self.ignored)}")
        if self.missing:
            lines.append(f"MISSING {len(self.missing)}: {summarize_keys(self.missing)}")
        if self.unexpected:
            lines.append(f"UNEXPECTED {len(self.unexpected)}: {summarize_keys(self.unexpected)}")
        if self.mismatched:
            shown = "; ".join(f"{k} checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.mismatched[:8])
            more = f" (+{len(self.mismatched) - 8} more)" if len(self.mismatched) > 8 else ""
            lines.append(f"MIS-SHAPED {len(self.mismatched)}: {shown}{more}")
        return "\n".join(lines)


def summarize_keys(keys: List[str], limit: int = 12) -> str:
    """Group the keys of numbered sub-modules: ``transformer.resblocks.* (192 keys)``."""
    groups: "OrderedDict[str, int]" = OrderedDict()
    for key in keys:
        pattern = re.sub(r"\.\d+(\..*)?$", ".*", key)
        groups[pattern] = groups.get(pattern, 0) + 1
    parts = [p if n == 1 else f"{p} ({n} keys)" for p, n in groups.items()]
    if len(parts) > limit:
        parts = parts[:limit] + [f"... {len(parts) - limit} more groups"]
    return ", ".join(parts)


# ----------------------------------------------------------------------------- reading files


def read_state_dict(source: CheckpointSource) -> Dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (``.pth``/``.pt``/``.bin`` via ``torch.load(weights_only=True)``,
    or ``.safetensors``; memory-mapped where the format allows) or of a state dict; unwraps
    ``{"model": ...}`` / ``{"state_dict": ...}`` and a ``module.`` prefix."""
    from fcclip_core.weights.errors import WeightsFileError
    from fcclip_core.weights.files import read_tensors, unwrap_tensors

    try:
        if isinstance(source, Mapping):
            return unwrap_tensors(source, "state dict")
        return read_tensors(Path(source))
    except WeightsFileError as exc:
        raise CheckpointError(str(exc)) from None


def read_clip_pretrained(source: CheckpointSource) -> Dict[str, torch.Tensor]:
    """open_clip weights (keys without the ``backbone.clip_model.`` prefix) as FC-CLIP keys."""
    if isinstance(source, (str, Path)):
        from open_clip.factory import load_state_dict as open_clip_load_state_dict

        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"open_clip weights file not found: {path}")
        tensors = dict(open_clip_load_state_dict(str(path), weights_only=True))
    else:
        tensors = read_state_dict(source)
    return {k if k.startswith(CLIP_PREFIX) else CLIP_PREFIX + k: v for k, v in tensors.items() if torch.is_tensor(v)}


# ----------------------------------------------------------------------------- loading


def _model_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    return dict(model.state_dict(keep_vars=True))


def load_checkpoint(
    model: nn.Module,
    checkpoint: CheckpointSource,
    clip_pretrained: Optional[CheckpointSource] = None,
    *,
    strict: bool = True,
    config_name: Optional[str] = None,
) -> LoadReport:
    """Load ``checkpoint`` into ``model``; fill missing CLIP keys from ``clip_pretrained``.

    Raises ``CheckpointError`` when (strict) any model key stays unfilled, a key has the wrong
    shape, the checkpoint has keys the model does not know (other than the loss buffer), or
    the file matches too few keys to be a checkpoint of this model at all.
    """
    expected = _model_tensors(model)
    ckpt = read_state_dict(checkpoint)
    report = LoadReport()
    label = f" ({config_name})" if config_name else ""

    to_load: Dict[str, torch.Tensor] = {}
    for key, value in ckpt.items():
        if key in expected:
            to_load[key] = value
        elif key in KNOWN_UNUSED_KEYS:
            report.ignored.append(key)
        else:
            report.unexpected.append(key)

    lacking = [k for k in expected if k not in to_load]
    if lacking and clip_pretrained is not None:
        clip = read_clip_pretrained(clip_pretrained)
        for key in lacking:
            if key.startswith(CLIP_PREFIX) and key in clip:
                to_load[key] = clip[key]
                report.from_clip_pretrained.append(key)
    report.missing = [k for k in expected if k not in to_load]

    for key, value in list(to_load.items()):
        want = tuple(expected[key].shape)
        if tuple(value.shape) != want:
            if value.numel() == expected[key].numel() and value.numel() == 1:
                to_load[key] = value.reshape(want)  # scalar stored as [1] or [] (logit scales)
                continue
            report.mismatched.append((key, tuple(value.shape), want))
            del to_load[key]
    report.loaded = [k for k in to_load if k not in report.from_clip_pretrained]

    if len(to_load) < MIN_MATCH_FRACTION * len(expected):
        raise CheckpointError(
            f"this does not look like a checkpoint of this FC-CLIP model{label}: only {len(to_load)} of the "
            f"model's {len(expected)} tensors are in it with the right shape ({len(report.mismatched)} with "
            f"other shapes, {len(report.unexpected)} unknown keys)\n" + report.summary())
    if strict and not report.ok:
        raise CheckpointError(_failure_message(report, label))

    for key, value in to_load.items():
        if value.dtype != expected[key].dtype:
            to_load[key] = value.to(expected[key].dtype)
    model.load_state_dict(to_load, strict=False, assign=True)
    return report


def _failure_message(report: LoadReport, label: str) -> str:
    lines = [f"checkpoint does not fit the model{label}:", report.summary()]
    clip_missing = [k for k in report.missing if k.startswith(CLIP_PREFIX)]
    if clip_missing and not report.from_clip_pretrained:
        lines.append(
            "The CLIP weights above are not in this checkpoint (the released fcclip_cocopan.pth omits the CLIP "
            "text tower). Supply the open_clip pretrained weights of the backbone (for the released model: "
            "convnext_large_d_320 / laion2b_s29b_b131k_ft_soup, file open_clip_pytorch_model.bin or .safetensors): "
            "`fcclip-weights download` fetches both files into the weight cache; otherwise pass the file as "
            "`fcclip-segment --clip-weights PATH`, Predictor(..., clip_weights=PATH) or "
            "build_model(..., clip_pretrained=PATH).")
    return "\n".join(lines)
