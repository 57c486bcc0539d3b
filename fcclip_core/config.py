"""Model configuration as data: dataclasses, YAML files and official fixture configs.

A ``ModelConfig`` fully describes one FC-CLIP network (the CLIP backbone architecture, head
sizes, inference thresholds, ensemble weights and preprocessing), so a YAML file in
``fcclip_core/configs`` or an official reference ``config.json`` is enough to build the model.

Loaders:
- ``load_model_config("convnext_large")`` / ``load_model_config("path/to/file.yaml")``
- ``model_config_from_reference(fixture_dir)``: the official fixture formats (``tiny/config.json``
  and ``config_convnext_large.json`` next to the ``large/`` fixture).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
BACKBONE_TYPES = ("convnext", "resnet")


class ConfigError(ValueError):
    """A configuration file or dictionary that does not describe a valid model."""


@dataclass(frozen=True)
class TimmTrunkConfig:
    """A timm trunk that timm does not ship under a name: ``base`` with architecture overrides.

    ``timm.create_model(base, **args)`` builds it (e.g. ``convnext_large`` with smaller
    ``depths``/``dims`` for the tiny fixture); ``name`` is the name the open_clip vision config
    uses for it.
    """

    name: str
    base: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneConfig:
    """The frozen open_clip CLIP model: its open_clip config and how FC-CLIP uses it."""

    type: str  # "convnext" or "resnet": which feature/pooling path the backbone takes
    open_clip_name: str  # open_clip model name (tokenizer, pretrained lookup, messages)
    open_clip_config: Mapping[str, Any]  # open_clip model config: embed_dim, vision_cfg, text_cfg, ...
    pretrained_tag: Optional[str] = None  # open_clip pretrained tag of the CLIP weights
    timm_trunk: Optional[TimmTrunkConfig] = None
    channels_last: bool = True  # run the ConvNeXt trunk in channels-last layout (faster on CPU)

    @property
    def embed_dim(self) -> int:
        return int(self.open_clip_config["embed_dim"])


@dataclass(frozen=True)
class PixelDecoderConfig:
    """Mask2Former's multi-scale deformable-attention pixel decoder as FC-CLIP configures it."""

    conv_dim: int = 256
    mask_dim: int = 256
    in_features: tuple[str, ...] = ("res2", "res3", "res4", "res5")
    transformer_in_features: tuple[str, ...] = ("res3", "res4", "res5")
    norm: str = "GN"
    norm_groups: int = 32
    common_stride: int = 4
    encoder_layers: int = 6
    encoder_heads: int = 8
    # The official pixel decoder hard-codes 1024 here, whatever MASK_FORMER.DIM_FEEDFORWARD says.
    encoder_ffn_dim: int = 1024
    encoder_points: int = 4


@dataclass(frozen=True)
class DecoderConfig:
    """FC-CLIP's masked-attention transformer decoder.

    ``num_layers`` is the number of decoder layers that exist, i.e. the official
    ``MASK_FORMER.DEC_LAYERS - 1`` (10 -> 9 for the released model).
    """

    hidden_dim: int = 256
    num_queries: int = 250
    heads: int = 8
    ffn_dim: int = 2048
    num_layers: int = 9
    pre_norm: bool = False
    enforce_input_proj: bool = False
    num_feature_levels: int = 3


@dataclass(frozen=True)
class InferenceConfig:
    """Classifier ensemble and post-processing settings."""

    ensemble_alpha: float = 0.4  # weight of the out-of-vocabulary probability for seen classes
    ensemble_beta: float = 0.8  # ... and for unseen classes
    ensemble_on_valid_mask: bool = False  # ensemble only queries whose mask covers a CLIP cell
    object_mask_threshold: float = 0.0
    overlap_threshold: float = 0.8
    detections_per_image: int = 100
    semantic_on: bool = True
    panoptic_on: bool = True
    instance_on: bool = True


@dataclass(frozen=True)
class InputConfig:
    """Preprocessing: test-time resize, normalisation (0..255 RGB units) and padding."""

    format: str = "RGB"
    pixel_mean: tuple[float, float, float] = (122.7709383, 116.7460125, 104.09373615)
    pixel_std: tuple[float, float, float] = (68.5005327, 66.6321579, 70.32316305)
    size_divisibility: int = 32
    # Short side after the test-time resize; None keeps the image at its native size.
    min_size_test: Optional[int] = 800
    max_size_test: int = 1333


@dataclass(frozen=True)
class ModelConfig:
    name: str
    backbone: BackboneConfig
    pixel_decoder: PixelDecoderConfig = PixelDecoderConfig()
    decoder: DecoderConfig = DecoderConfig()
    inference: InferenceConfig = InferenceConfig()
    input: InputConfig = InputConfig()

    @property
    def embed_dim(self) -> int:
        return self.backbone.embed_dim

    def replace(self, **sections: Any) -> "ModelConfig":
        """A copy with whole sections or fields of sections replaced.

        ``cfg.replace(input={"min_size_test": 640})`` changes one field of a section.
        """
        changes = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
                value = dataclasses.replace(current, **value)
            changes[name] = value
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        return _model_config_from_dict(data)


# ----------------------------------------------------------------------------- dict <-> dataclass


def _to_plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _build_section(cls: type, data: Optional[Mapping[str, Any]], where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known keys: {sorted(known)}")
    try:
        values = {name: _coerce(value, known[name].default) for name, value in data.items()}
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(value: Any, default: Any) -> Any:
    """Give a value read from YAML/JSON the type of the field's default (int 1 -> 1.0, list -> tuple)."""
    if value is None or default is None or default is dataclasses.MISSING:
        return value
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError(f"expected true/false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return type(default)(value)
    return value


def _model_config_from_dict(data: Mapping[str, Any]) -> ModelConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a model config must be a mapping, got {type(data).__name__}")
    allowed = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"model config: unknown sections {unknown}; known: {sorted(allowed)}")
    for required in ("name", "backbone"):
        if required not in data:
            raise ConfigError(f"model config: missing required key {required!r}")
    backbone = dict(data["backbone"])
    trunk = backbone.get("timm_trunk")
    if trunk is not None:
        backbone["timm_trunk"] = _build_section(TimmTrunkConfig, trunk, "backbone.timm_trunk")
    backbone_cfg = _build_section(BackboneConfig, backbone, "backbone")
    cfg = ModelConfig(
        name=str(data["name"]),
        backbone=backbone_cfg,
        pixel_decoder=_build_section(PixelDecoderConfig, data.get("pixel_decoder"), "pixel_decoder"),
        decoder=_build_section(DecoderConfig, data.get("decoder"), "decoder"),
        inference=_build_section(InferenceConfig, data.get("inference"), "inference"),
        input=_build_section(InputConfig, data.get("input"), "input"),
    )
    validate_model_config(cfg)
    return cfg


def validate_model_config(cfg: ModelConfig) -> None:
    """Reject configurations the network cannot be built from, with the reason."""
    bb = cfg.backbone
    if bb.type not in BACKBONE_TYPES:
        raise ConfigError(f"backbone.type {bb.type!r}: expected one of {BACKBONE_TYPES}")
    oc = bb.open_clip_config
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in oc:
            raise ConfigError(f"backbone.open_clip_config lacks {key!r}")
    pd, dec = cfg.pixel_decoder, cfg.decoder
    if pd.conv_dim % pd.encoder_heads:
        raise ConfigError(f"pixel_decoder.conv_dim {pd.conv_dim} is not divisible by encoder_heads {pd.encoder_heads}")
    if pd.norm == "GN" and pd.conv_dim % pd.norm_groups:
        raise ConfigError(f"pixel_decoder.conv_dim {pd.conv_dim} is not divisible by norm_groups {pd.norm_groups}")
    if dec.hidden_dim % dec.heads:
        raise ConfigError(f"decoder.hidden_dim {dec.hidden_dim} is not divisible by heads {dec.heads}")
    if dec.num_layers < 0 or dec.num_queries < 1:
        raise ConfigError("decoder.num_layers must be >= 0 and decoder.num_queries >= 1")
    if not set(pd.transformer_in_features) <= set(pd.in_features):
        raise ConfigError("pixel_decoder.transformer_in_features must be a subset of in_features")
    if len(cfg.input.pixel_mean) != 3 or len(cfg.input.pixel_std) != 3:
        raise ConfigError("input.pixel_mean and input.pixel_std need three values (R, G, B)")
    if cfg.input.format != "RGB":
        raise ConfigError(f"input.format {cfg.input.format!r}: only RGB is supported")


# ----------------------------------------------------------------------------- shipped configs


def available_model_configs() -> list[str]:
    """Names of the configurations shipped in ``fcclip_core/configs``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_model_config(name_or_path: str | Path) -> ModelConfig:
    """A shipped config by name (``"convnext_large"``, ``"fixture_tiny"``) or a YAML file path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"unknown model config {str(name_or_path)!r}; shipped: {available_model_configs()} "
                "(or give the path of a YAML file)")
    if not path.is_file():
        raise ConfigError(f"model config file not found: {path}")
    with path.open("r", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    try:
        return _model_config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def dump_model_config(cfg: ModelConfig, path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)


# ----------------------------------------------------------------------------- official fixtures


def model_config_from_reference(fixture_dir: str | Path) -> ModelConfig:
    """The model config of an official reference fixture directory.

    ``tiny``-format fixtures carry ``config.json``; the ``large`` format has its config as
    ``config_convnext_large.json`` (or any ``config_*.json``) in the fixture directory or its
    parent.
    """
    fixture_dir = Path(fixture_dir)
    own = fixture_dir / "config.json"
    if own.is_file():
        return _config_from_fixture_json(json.loads(own.read_text(encoding="utf-8")), fixture_dir.name)
    for folder in (fixture_dir, fixture_dir.parent):
        candidates = sorted(folder.glob("config_*.json"))
        if len(candidates) > 1:
            candidates = _configs_named_by(fixture_dir.name, candidates)
        if len(candidates) == 1:
            return released_model_config(candidates[0])
        if len(candidates) > 1:
            raise ConfigError(f"{folder}: several config_*.json files ({[c.name for c in candidates]}); "
                              "cannot tell which describes the fixture")
    raise ConfigError(f"{fixture_dir}: no config.json and no config_*.json here or in the parent directory")


def released_model_config(path: str | Path) -> ModelConfig:
    """A released model's effective-config file (``config_convnext_large.json``, ``config_RN50.json``)."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if "model" in data:
        return _config_from_released_json(data, path.stem)
    if "detectron2_cfg_yaml" in data:
        return _config_from_cfg_dump(data, path.stem)
    raise ConfigError(f"{path}: neither a 'model' section nor a detectron2 cfg dump")


def _configs_named_by(folder_name: str, candidates: list[Path]) -> list[Path]:
    """The config files whose model name the fixture folder's name contains (longest name wins:
    ``large_RN50x4`` -> ``config_RN50x4.json``, not ``config_RN50.json``)."""
    lowered = folder_name.lower()
    named = [c for c in candidates if c.stem[len("config_"):].lower() in lowered]
    if not named:
        return candidates
    longest = max(len(c.stem) for c in named)
    return [c for c in named if len(c.stem) == longest]


def _strip_parenthetical(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Official fixture keys carry notes: ``"DEC_LAYERS (cfg)"`` -> ``"DEC_LAYERS"``."""
    out = {}
    for key, value in mapping.items():
        out[re.sub(r"\s*\(.*\)\s*$", "", key)] = value
    return out


def _backbone_type_from_open_clip(name: str, oc_cfg: Mapping[str, Any]) -> str:
    vision = oc_cfg.get("vision_cfg", {})
    timm_name = str(vision.get("timm_model_name") or "")
    if "convnext" in timm_name.lower() or "convnext" in name.lower():
        return "convnext"
    if isinstance(vision.get("layers"), (list, tuple)):
        return "resnet"  # open_clip builds a ModifiedResNet for a list of stage depths
    raise ConfigError(f"cannot tell the CLIP visual tower type of {name!r} (vision_cfg {dict(vision)})")


def _timm_trunk_from_fixture(trunk: Mapping[str, Any]) -> TimmTrunkConfig:
    builder = str(trunk.get("builder", ""))
    match = re.search(r"_create_convnext\('([^']+)'", builder)
    base = match.group(1) if match else "convnext_large"
    args: dict[str, Any] = {}
    for key in ("depths", "dims", "conv_mlp", "head_norm_first"):
        if key in trunk:
            args[key] = list(trunk[key]) if isinstance(trunk[key], (list, tuple)) else trunk[key]
    if "kernel_size" in trunk:
        args["kernel_sizes"] = trunk["kernel_size"]
    if "depths" not in args or "dims" not in args:
        raise ConfigError(f"timm_trunk needs depths and dims, got {sorted(trunk)}")
    return TimmTrunkConfig(name=str(trunk["registered_name"]), base=base, args=args)


def _reference_backbone(name: str, oc_cfg: dict, tag: Optional[str], trunk: Optional[TimmTrunkConfig]) -> dict:
    return {
        "type": _backbone_type_from_open_clip(name, oc_cfg),
        "open_clip_name": name,
        "open_clip_config": oc_cfg,
        "pretrained_tag": tag,
        "timm_trunk": dataclasses.asdict(trunk) if trunk else None,
    }


def _config_from_fixture_json(data: Mapping[str, Any], label: str) -> ModelConfig:
    """A tiny-format fixture ``config.json`` (official cfg names, some keys with notes)."""
    try:
        oc_name = data["open_clip_model_name"]
        oc_cfg = copy.deepcopy(data["open_clip_model_config"])
        fc = _strip_parenthetical(data["fcclip"])
        inp = _strip_parenthetical(data["input"])
    except KeyError as exc:
        raise ConfigError(f"fixture config.json lacks {exc}") from None
    trunk = data.get("timm_trunk")
    if int(fc["EMBED_DIM"]) != int(oc_cfg["embed_dim"]):
        raise ConfigError(f"EMBED_DIM {fc['EMBED_DIM']} differs from the CLIP embed_dim {oc_cfg['embed_dim']}")
    num_layers = fc.get("num_transformer_decoder_layers", int(fc["DEC_LAYERS"]) - 1)
    return _model_config_from_dict({
        "name": f"reference_{label}",
        "backbone": _reference_backbone(oc_name, oc_cfg, None, _timm_trunk_from_fixture(trunk) if trunk else None),
        "pixel_decoder": {
            "conv_dim": fc["CONVS_DIM"],
            "mask_dim": fc["MASK_DIM"],
            "in_features": fc["IN_FEATURES"],
            "transformer_in_features": fc["DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"],
            "norm": fc.get("NORM", "GN"),
            "common_stride": fc["COMMON_STRIDE"],
            "encoder_layers": fc["TRANSFORMER_ENC_LAYERS"],
            "encoder_heads": fc.get("pixel_decoder_msdeformattn_n_heads", fc["NHEADS"]),
            "encoder_ffn_dim": fc.get("pixel_decoder_transformer_dim_feedforward", 1024),
            "encoder_points": fc.get("pixel_decoder_msdeformattn_n_points", 4),
        },
        "decoder": {
            "hidden_dim": fc["HIDDEN_DIM"],
            "num_queries": fc["NUM_OBJECT_QUERIES"],
            "heads": fc["NHEADS"],
            "ffn_dim": fc["DIM_FEEDFORWARD"],
            "num_layers": num_layers,
            "pre_norm": fc.get("PRE_NORM", False),
            "enforce_input_proj": fc.get("ENFORCE_INPUT_PROJ", False),
        },
        "inference": {
            "ensemble_alpha": fc["GEOMETRIC_ENSEMBLE_ALPHA"],
            "ensemble_beta": fc["GEOMETRIC_ENSEMBLE_BETA"],
            "ensemble_on_valid_mask": fc["ENSEMBLE_ON_VALID_MASK"],
            "object_mask_threshold": fc["OBJECT_MASK_THRESHOLD"],
            "overlap_threshold": fc["OVERLAP_THRESHOLD"],
            "detections_per_image": fc.get("TEST.DETECTIONS_PER_IMAGE", 100),
            "semantic_on": fc.get("SEMANTIC_ON", True),
            "panoptic_on": fc.get("PANOPTIC_ON", True),
            "instance_on": fc.get("INSTANCE_ON", True),
        },
        "input": {
            "format": inp.get("FORMAT", "RGB"),
            "pixel_mean": inp["PIXEL_MEAN"],
            "pixel_std": inp["PIXEL_STD"],
            "size_divisibility": fc.get("SIZE_DIVISIBILITY", inp.get("size_divisibility", 32)),
            "min_size_test": inp["MIN_SIZE_TEST"],
            "max_size_test": inp["MAX_SIZE_TEST"],
        },
    })


def _config_from_released_json(data: Mapping[str, Any], label: str) -> ModelConfig:
    """``config_convnext_large.json``: the effective configuration of a released model."""
    try:
        model = data["model"]
        head = model["SEM_SEG_HEAD"]
        pde = model["pixel_decoder_effective"]
        mf = model["MASK_FORMER"]
        test = mf["TEST"]
        inp = data["input"]
    except KeyError as exc:
        raise ConfigError(f"{label}: lacks {exc}") from None
    oc_name = model["CLIP_MODEL_NAME"]
    oc_cfg = copy.deepcopy(model["open_clip_model_config"])
    return _model_config_from_dict({
        "name": f"reference_{label}",
        "backbone": _reference_backbone(oc_name, oc_cfg, model.get("CLIP_PRETRAINED_WEIGHTS_official"), None),
        "pixel_decoder": {
            "conv_dim": head["CONVS_DIM"],
            "mask_dim": head["MASK_DIM"],
            "in_features": head["IN_FEATURES"],
            "transformer_in_features": pde["transformer_in_features"],
            "norm": head["NORM"],
            "norm_groups": head.get("GroupNorm_groups", 32),
            "common_stride": head["COMMON_STRIDE"],
            "encoder_layers": head["TRANSFORMER_ENC_LAYERS"],
            "encoder_heads": pde["msdeformattn_n_heads"],
            "encoder_ffn_dim": pde["encoder_ffn_dim"],
            "encoder_points": pde["msdeformattn_n_points"],
        },
        "decoder": {
            "hidden_dim": mf["HIDDEN_DIM"],
            "num_queries": mf["NUM_OBJECT_QUERIES"],
            "heads": mf["NHEADS"],
            "ffn_dim": mf["DIM_FEEDFORWARD"],
            "num_layers": mf.get("num_transformer_decoder_layers", int(mf["DEC_LAYERS"]) - 1),
            "pre_norm": mf["PRE_NORM"],
            "enforce_input_proj": mf["ENFORCE_INPUT_PROJ"],
        },
        "inference": _official_inference(model, test, test["TEST_DETECTIONS_PER_IMAGE"]),
        "input": _official_input(model, inp, inp.get("SIZE_DIVISIBILITY", mf["SIZE_DIVISIBILITY"])),
    })


def _official_inference(ensemble: Mapping[str, Any], test: Mapping[str, Any], detections: int) -> dict[str, Any]:
    """The inference section from official cfg names (``MODEL.FC_CLIP`` and ``MASK_FORMER.TEST``)."""
    return {
        "ensemble_alpha": ensemble["GEOMETRIC_ENSEMBLE_ALPHA"],
        "ensemble_beta": ensemble["GEOMETRIC_ENSEMBLE_BETA"],
        "ensemble_on_valid_mask": ensemble["ENSEMBLE_ON_VALID_MASK"],
        "object_mask_threshold": test["OBJECT_MASK_THRESHOLD"],
        "overlap_threshold": test["OVERLAP_THRESHOLD"],
        "detections_per_image": detections,
        "semantic_on": test["SEMANTIC_ON"],
        "panoptic_on": test["PANOPTIC_ON"],
        "instance_on": test["INSTANCE_ON"],
    }


def _official_input(model: Mapping[str, Any], inp: Mapping[str, Any], size_divisibility: int) -> dict[str, Any]:
    """The input section from official cfg names (``MODEL.PIXEL_*`` and ``INPUT``)."""
    return {
        "format": inp["FORMAT"],
        "pixel_mean": model["PIXEL_MEAN"],
        "pixel_std": model["PIXEL_STD"],
        "size_divisibility": size_divisibility,
        "min_size_test": inp["MIN_SIZE_TEST"],
        "max_size_test": inp["MAX_SIZE_TEST"],
    }


def _config_from_cfg_dump(data: Mapping[str, Any], label: str) -> ModelConfig:
    """An effective-config file that carries the whole detectron2 cfg (``config_RN50.json``).

    The open_clip model config is the JSON one; the "openai" CLIP weights are built by open_clip
    with QuickGELU, so a model that loads them (and did not run on random weights) gets it too.
    """
    try:
        cfg = yaml.safe_load(data["detectron2_cfg_yaml"])
        model = cfg["MODEL"]
        fc, head, mf = model["FC_CLIP"], model["SEM_SEG_HEAD"], model["MASK_FORMER"]
        test, inp = mf["TEST"], cfg["INPUT"]
        oc_name = str(data.get("CLIP_MODEL_NAME", fc["CLIP_MODEL_NAME"]))
        oc_cfg = copy.deepcopy(data["open_clip_model_config"])
    except (KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{label}: the cfg dump lacks {exc}") from None
    tag = data.get("CLIP_PRETRAINED_WEIGHTS_official", fc.get("CLIP_PRETRAINED_WEIGHTS")) or None
    used = str(data.get("CLIP_PRETRAINED_WEIGHTS_used_here", tag or ""))
    ran_on_openai_weights = tag == "openai" and "random" not in used
    oc_cfg.setdefault("quick_gelu", ran_on_openai_weights)
    return _model_config_from_dict({
        "name": f"reference_{label}",
        "backbone": _reference_backbone(oc_name, oc_cfg, tag, None),
        "pixel_decoder": {
            "conv_dim": head["CONVS_DIM"],
            "mask_dim": head["MASK_DIM"],
            "in_features": head["IN_FEATURES"],
            "transformer_in_features": head["DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"],
            "norm": head["NORM"],
            "common_stride": head["COMMON_STRIDE"],
            "encoder_layers": head["TRANSFORMER_ENC_LAYERS"],
            "encoder_heads": mf["NHEADS"],  # the official pixel decoder takes MASK_FORMER.NHEADS
            "encoder_ffn_dim": 1024,  # hard-coded there
            "encoder_points": head["DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS"],
        },
        "decoder": {
            "hidden_dim": mf["HIDDEN_DIM"],
            "num_queries": mf["NUM_OBJECT_QUERIES"],
            "heads": mf["NHEADS"],
            "ffn_dim": mf["DIM_FEEDFORWARD"],
            "num_layers": int(mf["DEC_LAYERS"]) - 1,
            "pre_norm": mf["PRE_NORM"],
            "enforce_input_proj": mf["ENFORCE_INPUT_PROJ"],
        },
        "inference": _official_inference(fc, test, cfg.get("TEST", {}).get("DETECTIONS_PER_IMAGE", 100)),
        "input": _official_input(model, inp, mf["SIZE_DIVISIBILITY"]),
    })
