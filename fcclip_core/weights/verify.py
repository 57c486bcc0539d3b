"""Structural checks: does a file hold the tensors a model config needs, with the right shapes?

The expected keys and shapes come from the model itself, built on the meta device (no memory,
no random init), so the check follows the model code instead of a list kept beside it. The
FC-CLIP checkpoint is checked with ``fcclip_core.checkpoint.load_checkpoint`` against such an
empty model; open_clip weights against the model's ``backbone.clip_model.*`` keys.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import torch

from fcclip_core.checkpoint import CLIP_PREFIX, CheckpointError, LoadReport, load_checkpoint, summarize_keys
from fcclip_core.weights.errors import WeightsFileError
from fcclip_core.weights.files import Tensors, export_metadata, safetensors_shapes

# Keys that mark what a state dict is (checked on a few prefixes, not on one model config).
_FCCLIP_HEAD_PREFIXES = ("sem_seg_head.", "void_embedding.")
_CLIP_ROOT_KEYS = ("token_embedding.weight", "positional_embedding", "text_projection", "logit_scale")


def empty_model(config_name: str) -> torch.nn.Module:
    """A fresh model of ``config_name`` whose parameters live on the meta device."""
    from fcclip_core.modeling.build import build_empty_model

    return build_empty_model(config_name)


@functools.lru_cache(maxsize=8)
def expected_shapes(config_name: str) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the model and its shape."""
    return {k: tuple(v.shape) for k, v in empty_model(config_name).state_dict().items()}


def kind_of(tensors: Mapping[str, torch.Tensor]) -> str:
    """'checkpoint' (FC-CLIP keys), 'clip' (open_clip keys) or 'unknown'."""
    if any(k.startswith(_FCCLIP_HEAD_PREFIXES) or k.startswith(CLIP_PREFIX) for k in tensors):
        return "checkpoint"
    if any(k in _CLIP_ROOT_KEYS or k.startswith(("visual.", "transformer.resblocks.")) for k in tensors):
        return "clip"
    return "unknown"


@dataclass(frozen=True)
class CheckpointCheck:
    report: LoadReport
    clip_keys_needed: tuple[str, ...]  # CLIP keys the checkpoint lacks: the open_clip file must hold them

    @property
    def needs_clip(self) -> bool:
        return bool(self.clip_keys_needed)


def _shape_lines(mismatched) -> str:
    shown = [f"  {key}: expected {list(want)}, found {list(got)}" for key, got, want in mismatched[:10]]
    if len(mismatched) > 10:
        shown.append(f"  ... and {len(mismatched) - 10} more")
    return "\n".join(shown)


def check_checkpoint(tensors: Tensors, config_name: str, where: str) -> CheckpointCheck:
    """Check an FC-CLIP checkpoint alone; CLIP keys it lacks may come from the open_clip weights."""
    kind = kind_of(tensors)
    if kind == "clip":
        raise WeightsFileError(f"{where}: this is an open_clip CLIP weights file, not an FC-CLIP checkpoint")
    try:
        report = load_checkpoint(empty_model(config_name), dict(tensors), None, strict=False, config_name=config_name)
    except CheckpointError as exc:
        raise WeightsFileError(f"{where}: wrong model: {exc}") from None
    problems = []
    if report.mismatched:
        problems.append(f"{len(report.mismatched)} tensors have the wrong shape for model config "
                        f"{config_name!r}:\n{_shape_lines(report.mismatched)}")
    if report.unexpected:
        problems.append(f"{len(report.unexpected)} keys the model does not have: {summarize_keys(report.unexpected)}")
    not_clip = [k for k in report.missing if not k.startswith(CLIP_PREFIX)]
    if not_clip:
        problems.append(f"{len(not_clip)} keys missing: {summarize_keys(not_clip)}")
    if problems:
        raise WeightsFileError(f"{where}: does not fit model config {config_name!r} (is it the checkpoint of "
                               "another model, or a damaged file?):\n" + "\n".join(problems))
    needed = tuple(k for k in report.missing if k.startswith(CLIP_PREFIX))
    return CheckpointCheck(report=report, clip_keys_needed=needed)


def check_clip(tensors: Tensors, config_name: str, where: str, needed: Optional[tuple[str, ...]] = None) -> None:
    """Check open_clip weights: the model's CLIP, every needed key, right shapes.

    ``needed``: the CLIP keys a checkpoint lacks (``CheckpointCheck.clip_keys_needed``); without
    a checkpoint to ask, every key outside the visual tower (the text tower, which released
    checkpoints omit) is needed. Every other key the file shares with the model must have the
    model's shape too, and a file whose keys are mostly not the model's is another CLIP model
    (text towers of different CLIP models can have the same shapes; their visual towers differ).
    """
    kind = kind_of(tensors)
    if kind == "checkpoint":
        raise WeightsFileError(f"{where}: this is an FC-CLIP checkpoint, not open_clip CLIP weights")
    if kind == "unknown":
        raise WeightsFileError(f"{where}: not open_clip CLIP weights (none of the {len(tensors)} keys is a CLIP key, "
                               f"e.g. {summarize_keys(sorted(tensors), 3)})")
    shapes = {k[len(CLIP_PREFIX):]: v for k, v in expected_shapes(config_name).items() if k.startswith(CLIP_PREFIX)}
    if needed is None:
        needed = tuple(CLIP_PREFIX + k for k in shapes if not k.startswith("visual."))
    missing = [k[len(CLIP_PREFIX):] for k in needed if k[len(CLIP_PREFIX):] not in tensors]
    mismatched = [(k, tuple(v.shape), shapes[k]) for k, v in tensors.items()
                  if k in shapes and tuple(v.shape) != shapes[k] and not (v.numel() == 1 and _numel(shapes[k]) == 1)]
    foreign = [k for k in tensors if k not in shapes]
    shared = len(tensors) - len(foreign)
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} tensors have the wrong shape:\n{_shape_lines(mismatched)}")
    if missing:
        problems.append(f"{len(missing)} keys missing: {summarize_keys(missing)}")
    if len(foreign) > shared:
        problems.append(f"{len(foreign)} of its {len(tensors)} keys are not this CLIP model's: {summarize_keys(foreign)}")
    if problems:
        raise WeightsFileError(f"{where}: not the CLIP weights of model config {config_name!r} (another CLIP "
                               "model?):\n" + "\n".join(problems))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def with_clip_prefix(clip_tensors: Tensors) -> Tensors:
    return {CLIP_PREFIX + k: v for k, v in clip_tensors.items()}


def load_complete(tensors: Tensors, clip_tensors: Optional[Tensors], config_name: str, where: str) -> torch.nn.Module:
    """An empty model filled (by assignment, no copy) from a checkpoint and its CLIP weights."""
    model = empty_model(config_name)
    try:
        load_checkpoint(model, dict(tensors), with_clip_prefix(clip_tensors) if clip_tensors is not None else None,
                        strict=True, config_name=config_name)
    except CheckpointError as exc:
        raise WeightsFileError(f"{where}: {exc}") from None
    return model


def check_export(path: Path, config_name: Optional[str] = None) -> dict[str, str]:
    """Check an exported file from its header alone: metadata, every key, every shape."""
    path = Path(path)
    meta = export_metadata(path)
    if meta is None:
        raise WeightsFileError(f"{path}: a safetensors file without fcclip_ros export metadata "
                               "(write one with `fcclip-weights export`)")
    if config_name is not None and meta.get("model_config") != config_name:
        raise WeightsFileError(f"{path}: exported for model config {meta.get('model_config')!r}, "
                               f"not {config_name!r}")
    config = meta.get("model_config", "")
    want = expected_shapes(config)
    have = safetensors_shapes(path)
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    mismatched = [(k, have[k], want[k]) for k in want if k in have and have[k] != want[k]]
    if missing or unexpected or mismatched:
        problems = []
        if mismatched:
            problems.append(f"{len(mismatched)} tensors have the wrong shape:\n{_shape_lines(mismatched)}")
        if missing:
            problems.append(f"{len(missing)} keys missing: {summarize_keys(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} keys the model does not have: {summarize_keys(unexpected)}")
        raise WeightsFileError(f"{path}: does not fit model config {config!r}:\n" + "\n".join(problems))
    return meta
