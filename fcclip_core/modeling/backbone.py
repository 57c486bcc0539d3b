"""The frozen open_clip CLIP model as FC-CLIP's backbone.

One interface, ``CLIPBackbone``, with one subclass per CLIP visual tower family (chosen by
``BackboneConfig.type``):
- ``extract_features(images)``: multi-scale features ``stem``, ``res2``..``res5`` and the dense
  CLIP map ``clip_vis_dense`` for the out-of-vocabulary classifier;
- ``embed_regions(clip_dense, mask_logits)``: one CLIP embedding per query region;
- the text tower lives in ``clip_model`` (open_clip's own ``encode_text``).

The CLIP model is built by open_clip itself from the config dict (no re-implementation); a
timm trunk that timm does not know by name (the tiny fixture's) is registered from the config.
The whole model is frozen and always in eval mode.
"""
from __future__ import annotations

import json
from typing import Dict, Mapping, Optional

import open_clip
import torch
from torch import nn

from fcclip_core.config import BackboneConfig
from fcclip_core.modeling.mask_pooling import mask_pool
from fcclip_core.modeling.timm_trunks import register_timm_trunk

FEATURE_STRIDES = {"stem": 4, "res2": 4, "res3": 8, "res4": 16, "res5": 32}


# ----------------------------------------------------------------------------- construction


def open_clip_model_config(cfg: BackboneConfig) -> dict:
    """The open_clip config with a config-defined timm trunk replaced by its registered name."""
    model_cfg = json.loads(json.dumps(dict(cfg.open_clip_config)))  # deep, plain copy
    if cfg.timm_trunk is not None:
        vision = model_cfg.setdefault("vision_cfg", {})
        if vision.get("timm_model_name") not in (None, cfg.timm_trunk.name):
            raise ValueError(
                f"vision_cfg.timm_model_name {vision.get('timm_model_name')!r} does not name the configured "
                f"timm_trunk {cfg.timm_trunk.name!r}")
        vision["timm_model_name"] = register_timm_trunk(cfg.timm_trunk)
    return model_cfg


def build_open_clip_model(cfg: BackboneConfig) -> open_clip.CLIP:
    """open_clip's CLIP class built from the config dict (random init; no download)."""
    model_cfg = open_clip_model_config(cfg)
    vision = model_cfg.get("vision_cfg", {})
    if vision.get("timm_model_pretrained"):
        raise ValueError("timm_model_pretrained would download ImageNet weights; FC-CLIP loads its own")
    return open_clip.CLIP(**model_cfg)


# ----------------------------------------------------------------------------- interface


class CLIPBackbone(nn.Module):
    """Frozen CLIP: multi-scale visual features, region embeddings and the text tower."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.config = cfg
        self.clip_model = build_open_clip_model(cfg)
        self.clip_model.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "CLIPBackbone":
        """The CLIP model never trains here: it stays in eval mode whatever is asked."""
        return super().train(False)

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint image-text embedding space."""
        return int(self.clip_model.text_projection.shape[-1])

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip_model.logit_scale

    def output_channels(self) -> Dict[str, int]:
        raise NotImplementedError

    def output_strides(self) -> Dict[str, int]:
        return dict(FEATURE_STRIDES)

    def extract_features(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def embed_regions(
        self, clip_dense: torch.Tensor, mask_logits: torch.Tensor, record: Optional[Dict[str, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """CLIP embeddings [B, Q, E] of the regions where ``mask_logits`` [B, Q, h, w] > 0.

        ``record``, when given, receives the path's intermediate tensors by name.
        """
        raise NotImplementedError

    def prepare_for_inference(self) -> None:
        """Hook run once the weights are in place (layout changes and the like)."""

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.extract_features(images)


class ConvNeXtCLIPBackbone(CLIPBackbone):
    """open_clip CLIP with a timm ConvNeXt trunk (``convnext_large_d_320`` and kin).

    res2..res5 are the four stage outputs; the dense CLIP map is ``trunk.norm_pre(res5)``
    (Identity for these models). A region embedding mask-pools the dense map, then applies the
    trunk head norm and the CLIP projection MLP, as CLIP would on a pooled image.
    """

    def __init__(self, cfg: BackboneConfig):
        super().__init__(cfg)
        self.channels_last = bool(cfg.channels_last)

    @property
    def trunk(self) -> nn.Module:
        return self.clip_model.visual.trunk

    def output_channels(self) -> Dict[str, int]:
        stages = [int(info["num_chs"]) for info in self.trunk.feature_info]
        stem = int(self.trunk.stem[0].out_channels)
        return {"stem": stem, **{f"res{i + 2}": c for i, c in enumerate(stages)}}

    def prepare_for_inference(self) -> None:
        if self.channels_last:
            self.trunk.to(memory_format=torch.channels_last)

    def extract_features(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        trunk = self.trunk
        x = images.contiguous(memory_format=torch.channels_last) if self.channels_last else images
        x = trunk.stem(x)
        out = {"stem": x}
        for index, stage in enumerate(trunk.stages):
            x = stage(x)
            out[f"res{index + 2}"] = x
        out["clip_vis_dense"] = trunk.norm_pre(x)
        return out

    def embed_regions(self, clip_dense, mask_logits, record=None) -> torch.Tensor:
        pooled = mask_pool(clip_dense, mask_logits)  # [B, Q, C]
        if record is not None:
            record["pooled_clip_feature_raw"] = pooled
        batch, queries, channels = pooled.shape
        x = pooled.reshape(batch * queries, channels, 1, 1)  # one 1x1 "image" per region
        x = self.trunk.head(x)
        x = self.clip_model.visual.head(x)
        return x.reshape(batch, queries, -1)


BACKBONE_CLASSES: Mapping[str, type] = {"convnext": ConvNeXtCLIPBackbone}


class UnsupportedBackboneError(NotImplementedError):
    """The config names a CLIP visual tower family this implementation cannot run yet."""


def build_backbone(cfg: BackboneConfig) -> CLIPBackbone:
    try:
        cls = BACKBONE_CLASSES[cfg.type]
    except KeyError:
        raise UnsupportedBackboneError(
            f"CLIP backbone type {cfg.type!r} ({cfg.open_clip_name}) is not supported yet; "
            f"supported: {sorted(BACKBONE_CLASSES)}") from None
    return cls(cfg)
