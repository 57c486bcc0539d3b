"""Read the official reference fixtures (``../shared/reference``) into one common shape.

Two directory formats exist:

- *tiny* (``tiny/``, ``rn_tiny/``): ``config.json``, ``weights.pth``, ``vocab.json``,
  ``inputs.npz`` (``image{i}_orig_rgb`` / ``_model_input_rgb`` / ``_backbone_input``),
  ``expected.pt`` (``text`` + per-image tensors), optional ``fragility.json`` /
  ``sensitivity.json``;
- *large* (``large/``): ``gen_weights.py`` generating the weights from the manifest
  (``manifest_*.json`` here or in the parent), ``input.npz`` (one image, no test resize),
  ``expected.pt`` (flat), ``sensitivity.json``, the config as ``config_*.json`` here or in the
  parent, and the vocabulary named in ``expected.pt["note"]`` (``vocabulary = <path>``) unless a
  ``vocab.json`` lies here.

``load_fixture(path)`` returns a ``ReferenceFixture`` whose per-image ``expected`` dictionary
uses the same names for both formats (``backbone/res2``, ``pixel_decoder/mask_features``,
``decoder/pred_masks``, ``mask_cls_final_logprobs``, ``sem_seg``, ``panoptic_seg``, ...).
"""
from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from fcclip_core.config import ModelConfig, model_config_from_reference


class FixtureError(ValueError):
    """A directory that is not a reference fixture in a known format; the message says why."""


@dataclass
class ReferenceImage:
    name: str
    original_rgb: np.ndarray  # H0 x W0 x 3 uint8: the input image, output resolution
    model_input_rgb: Optional[np.ndarray]  # after the official test resize (None: not recorded)
    backbone_input: Optional[torch.Tensor]  # [1, 3, Hp, Wp] normalised, padded
    expected: Dict[str, Any]  # recorded outputs by common name


@dataclass
class ReferenceFixture:
    path: Path
    format: str  # "tiny" or "large"
    config: ModelConfig  # the fixture's own model (input.min_size_test = its test resize)
    classes: List[str]  # class strings in the official synonym format
    isthing: List[bool]
    seen: List[bool]  # the official category_overlapping_mask
    images: List[ReferenceImage]
    text: Dict[str, torch.Tensor]  # text_classifier [S, E], synonym_counts [K]
    load_weights: Callable[[], Dict[str, torch.Tensor]]
    fragility: Optional[List[dict]] = None
    sensitivity: Optional[dict] = None
    notes: List[str] = field(default_factory=list)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FixtureError(f"{path}: cannot read ({exc})") from exc


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # some fixtures (rn_tiny) pickle Python objects
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception:
            raise FixtureError(f"{path}: cannot load ({exc})") from exc


def detect_format(path: Path) -> str:
    if (path / "config.json").is_file() and (path / "inputs.npz").is_file():
        return "tiny"
    if (path / "gen_weights.py").is_file() and (path / "input.npz").is_file():
        return "large"
    raise FixtureError(
        f"{path} is not a reference fixture: expected config.json + inputs.npz + weights.pth + expected.pt "
        "(tiny format) or gen_weights.py + input.npz + expected.pt (large format)")


def load_fixture(path: str | Path) -> ReferenceFixture:
    path = Path(path)
    if not path.is_dir():
        raise FixtureError(f"{path} is not a directory")
    kind = detect_format(path)
    for required in ("expected.pt",) + (("weights.pth", "vocab.json") if kind == "tiny" else ()):
        if not (path / required).is_file():
            raise FixtureError(f"{path}: {required} is missing")
    return _load_tiny(path) if kind == "tiny" else _load_large(path)


def _vocab_fields(vocab: dict) -> tuple[List[str], List[bool], List[bool]]:
    try:
        classes = list(vocab["stuff_classes"])
        isthing = [bool(x) for x in vocab["isthing"]]
        seen = [bool(x) for x in vocab["category_overlapping_mask"]]
    except KeyError as exc:
        raise FixtureError(f"vocab.json lacks {exc}") from None
    if not (len(classes) == len(isthing) == len(seen)):
        raise FixtureError("vocab.json: stuff_classes, isthing and category_overlapping_mask differ in length")
    return classes, isthing, seen


# ----------------------------------------------------------------------------- tiny format


def _load_tiny(path: Path) -> ReferenceFixture:
    try:
        config = model_config_from_reference(path)
    except ValueError as exc:
        raise FixtureError(f"{path}: {exc}") from exc
    classes, isthing, seen = _vocab_fields(_read_json(path / "vocab.json"))
    expected = _torch_load(path / "expected.pt")
    inputs = np.load(path / "inputs.npz")
    images = []
    for index, rec in enumerate(expected["images"]):
        key = f"image{index}"
        if f"{key}_orig_rgb" not in inputs:
            raise FixtureError(f"{path}/inputs.npz lacks {key}_orig_rgb")
        images.append(ReferenceImage(
            name=f"image{index}",
            original_rgb=inputs[f"{key}_orig_rgb"],
            model_input_rgb=inputs[f"{key}_model_input_rgb"] if f"{key}_model_input_rgb" in inputs else None,
            backbone_input=torch.from_numpy(inputs[f"{key}_backbone_input"]) if f"{key}_backbone_input" in inputs else None,
            expected=_flatten_tiny_image(rec),
        ))
    text = expected["text"]
    fragility = _read_json(path / "fragility.json") if (path / "fragility.json").is_file() else None
    sensitivity = _read_json(path / "sensitivity.json") if (path / "sensitivity.json").is_file() else None
    return ReferenceFixture(
        path=path, format="tiny", config=config, classes=classes, isthing=isthing, seen=seen, images=images,
        text={"text_classifier": text["text_classifier"],
              "synonym_counts": torch.as_tensor(text["num_templates"])},
        load_weights=lambda: torch.load(path / "weights.pth", map_location="cpu", weights_only=True, mmap=True),
        fragility=fragility, sensitivity=sensitivity)


# recorded outputs that are compared as a whole (discrete results), not tensor by tensor
WHOLE_OUTPUTS = ("panoptic_seg", "segments_info", "instances")


def flatten_outputs(record: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested per-image outputs as ``stage/name[/index]`` -> tensor; non-tensor leaves (sizes,
    notes, counters) are dropped, discrete results are kept whole."""
    flat: Dict[str, Any] = {}
    items = record.items() if isinstance(record, dict) else enumerate(record)
    for key, value in items:
        name = f"{prefix}{key}"
        if not prefix and key in WHOLE_OUTPUTS:
            flat[name] = value
        elif isinstance(value, (dict, list, tuple)):
            flat.update(flatten_outputs(value, f"{name}/"))
        elif torch.is_tensor(value):
            flat[name] = value
    return flat


def _flatten_tiny_image(rec: dict) -> Dict[str, Any]:
    out = flatten_outputs(rec)
    if "mask_cls_final_logprobs" in out:  # recorded for the single image, without the batch dim
        out["mask_cls_final_logprobs"] = out["mask_cls_final_logprobs"].unsqueeze(0)
    return out


# ----------------------------------------------------------------------------- large format


def _find_one(path: Path, pattern: str) -> Path:
    for folder in (path, path.parent):
        found = sorted(folder.glob(pattern))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise FixtureError(f"{folder}: several {pattern} files: {[f.name for f in found]}")
    raise FixtureError(f"{path}: no {pattern} here or in the parent directory")


def _vocabulary_path(path: Path, note: str) -> Path:
    own = path / "vocab.json"
    if own.is_file():
        return own
    match = re.search(r"vocabulary\s*=\s*(\S+\.json)", note or "")
    if not match:
        raise FixtureError(f"{path}: no vocab.json and expected.pt's note names no 'vocabulary = <file>.json'")
    named = (path / match.group(1)).resolve()
    if not named.is_file():
        raise FixtureError(f"{path}: the vocabulary {match.group(1)} named by expected.pt is missing")
    return named


def _generator(path: Path, manifest_path: Path, seed: int) -> Callable[[], Dict[str, torch.Tensor]]:
    def generate() -> Dict[str, torch.Tensor]:
        spec = importlib.util.spec_from_file_location("fcclip_reference_gen_weights", path / "gen_weights.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        manifest = _read_json(manifest_path)
        arrays = module.generate(manifest, seed)
        weights = {}
        while arrays:  # hand the arrays over one by one: no second copy of 1.5 GB
            key, array = arrays.popitem()
            weights[key] = torch.from_numpy(np.ascontiguousarray(array))
        return weights

    return generate


_LARGE_NAMES = {
    "mask_features": "pixel_decoder/mask_features",
    "pred_logits": "decoder/pred_logits",
    "pred_masks": "decoder/pred_masks",
    "text_classifier_with_void": "text_classifier_with_void",
    "out_vocab_logits_with_void": "out_vocab_logits_with_void",
    "sem_seg": "sem_seg",
    "panoptic_seg": "panoptic_seg",
    "segments_info": "segments_info",
    "instances": "instances",
}


def _load_large(path: Path) -> ReferenceFixture:
    expected = _torch_load(path / "expected.pt")
    config_path = _find_one(path, "config_*.json")
    manifest_path = _find_one(path, "manifest_*.json")
    try:
        config = model_config_from_reference(path)
    except ValueError as exc:
        raise FixtureError(f"{path}: {exc}") from exc
    data = np.load(path / "input.npz")
    rgb = data["input_rgb_uint8"]
    # the large run feeds the image at its own size (no test-time resize)
    config = config.replace(input={"min_size_test": None})
    vocab_path = _vocabulary_path(path, str(expected.get("note", "")))
    classes, isthing, seen = _vocab_fields(_read_json(vocab_path))
    flat: Dict[str, Any] = {}
    for name, value in expected.get("backbone", {}).items():
        flat[f"backbone/{name}"] = value
    for level, tensor in enumerate(expected.get("multi_scale_features", [])):
        flat[f"pixel_decoder/multi_scale_features/{level}"] = tensor
    for name, common in _LARGE_NAMES.items():
        if name in expected:
            flat[common] = expected[name]
    if "mask_cls_final_logprobs" in expected:
        flat["mask_cls_final_logprobs"] = expected["mask_cls_final_logprobs"].unsqueeze(0)
    image = ReferenceImage(
        name="image0", original_rgb=rgb, model_input_rgb=rgb,
        backbone_input=torch.from_numpy(data["backbone_input"]) if "backbone_input" in data else None,
        expected=flat)
    vocab = _read_json(vocab_path)
    counts = vocab.get("num_templates_per_class") or [len(s) for s in vocab.get("synonyms_after_official_split", [])]
    text = {"synonym_counts": torch.as_tensor(counts)}
    if "text_classifier_with_void" in expected:
        text["text_classifier"] = expected["text_classifier_with_void"][:-1]
    sensitivity = _read_json(path / "sensitivity.json") if (path / "sensitivity.json").is_file() else None
    seed = int(expected.get("seed", 0))
    return ReferenceFixture(
        path=path, format="large", config=config, classes=classes, isthing=isthing, seen=seen, images=[image],
        text=text, load_weights=_generator(path, manifest_path, seed), sensitivity=sensitivity,
        notes=[f"config {config_path.name}, manifest {manifest_path.name}, vocabulary {vocab_path}, seed {seed}"])
