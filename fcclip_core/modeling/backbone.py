"""The frozen open_clip CLIP model as FC-CLIP's backbone.

One interface, ``CLIPBackbone``, with one subclass per CLIP visual tower family (chosen by
``BackboneConfig.type``):
- ``extract_features(images)``: multi-scale features ``stem``, ``res2``..``res5`` and the dense
  CLIP map ``clip_vis_dense`` for the out-of-vocabulary classifier;
- ``embed_regions(clip_dense, mask_logits)``: one CLIP embedding per query region (ConvNeXt:
  mask pooling + CLIP's projection head; ResNet: CLIP's attention pool restricted to the mask);
- the text tower lives in ``clip_model`` (open_clip's own ``encode_text``).

The CLIP model is built by open_clip itself from the config dict (no re-implementation); a
timm trunk that timm does not know by name (the tiny fixture's) is registered from the config.
The whole model is frozen and always in eval mode.
"""
from __future__ import annotations

import json
import math
from typing import Dict, Mapping, Optional

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from fcclip_core.config import BackboneConfig
from fcclip_core.modeling.mask_pooling import mask_pool, masks_on_grid
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
        self.channels_last = bool(cfg.channels_last)
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

    def _to_channels_last(self, module: nn.Module) -> None:
        if self.channels_last:
            module.to(memory_format=torch.channels_last)

    def _input_layout(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

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

    @property
    def trunk(self) -> nn.Module:
        return self.clip_model.visual.trunk

    def output_channels(self) -> Dict[str, int]:
        stages = [int(info["num_chs"]) for info in self.trunk.feature_info]
        stem = int(self.trunk.stem[0].out_channels)
        return {"stem": stem, **{f"res{i + 2}": c for i, c in enumerate(stages)}}

    def prepare_for_inference(self) -> None:
        self._to_channels_last(self.trunk)

    def extract_features(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        trunk = self.trunk
        x = trunk.stem(self._input_layout(images))
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


class ResNetCLIPBackbone(CLIPBackbone):
    """open_clip CLIP with a ModifiedResNet visual tower (OpenAI's RN50, RN101, RN50x4/x16/x64).

    ``stem`` is the output of the three-convolution stem (stride 2, before its average pool);
    res2..res5 are ``layer1``..``layer4``; the dense CLIP map is res5 itself. A region
    embedding is CLIP's own attention pool with the keys restricted to the region: the query is
    the image's mean token (plus the class position embedding), the same for every region, so
    regions differ only through which grid cells they let the query attend to. A region that
    covers no cell attends to nothing and pools to the output bias (``c_proj.bias``); the
    ensemble ignores its out-of-vocabulary logits (``ensemble_on_valid_mask``).
    """

    @property
    def visual(self) -> nn.Module:
        return self.clip_model.visual

    def _stages(self) -> list[nn.Module]:
        """``layer1``..``layer4``, whose outputs are res2..res5."""
        return [self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4]

    def output_channels(self) -> Dict[str, int]:
        channels = {"stem": int(self.visual.conv3.out_channels)}
        for index, stage in enumerate(self._stages()):
            channels[f"res{index + 2}"] = int(stage[-1].bn3.num_features)
        return channels

    def output_strides(self) -> Dict[str, int]:
        return {**FEATURE_STRIDES, "stem": 2}

    def prepare_for_inference(self) -> None:
        for name, child in self.visual.named_children():
            if name != "attnpool":
                self._to_channels_last(child)

    def extract_features(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        visual = self.visual
        x = self._input_layout(images.to(visual.conv1.weight.dtype))
        x = visual.act1(visual.bn1(visual.conv1(x)))
        x = visual.act2(visual.bn2(visual.conv2(x)))
        x = visual.act3(visual.bn3(visual.conv3(x)))
        out = {"stem": x}
        x = visual.avgpool(x)
        for index, stage in enumerate(self._stages()):
            x = stage(x)
            out[f"res{index + 2}"] = x
        out["clip_vis_dense"] = x
        return out

    def embed_regions(self, clip_dense, mask_logits, record=None) -> torch.Tensor:
        pool = self.visual.attnpool
        batch, channels, height, width = clip_dense.shape
        mask_logits = masks_on_grid(mask_logits, (height, width))
        num_regions = mask_logits.shape[1]
        tokens = clip_dense.flatten(2).transpose(1, 2)  # [B, HW, C]
        position = pool.positional_embedding.to(tokens.dtype)
        spatial = resize_position_grid(position[1:], height, width)  # [HW, C]
        key_value = tokens + spatial
        query = tokens.mean(1) + position[0]  # [B, C]
        allowed = (mask_logits > 0).flatten(2)  # [B, Q, HW]
        if record is not None:
            heads = int(pool.num_heads)
            record["rn_attnpool"] = {
                "query": query.unsqueeze(0).expand(num_regions, -1, -1),
                "key_value": key_value.transpose(0, 1),
                "spatial_pos_embed": spatial.unsqueeze(1),
                "attn_mask": (~allowed).unsqueeze(1).expand(-1, heads, -1, -1).reshape(
                    batch * heads, num_regions, height * width),
            }
        return masked_attention_pool(pool, query, key_value, allowed)


def resize_position_grid(grid_embedding: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A square grid of position embeddings [g*g, C], bilinearly resized to [height*width, C]."""
    cells, channels = grid_embedding.shape
    side = math.isqrt(cells)
    if side * side != cells:
        raise ValueError(f"attention-pool position embedding has {cells} grid cells, not a square grid")
    if (side, side) == (height, width):
        return grid_embedding
    grid = grid_embedding.T.reshape(1, channels, side, side)
    grid = F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)
    return grid.reshape(channels, height * width).T


def masked_attention_pool(
    pool: nn.Module, query: torch.Tensor, key_value: torch.Tensor, allowed: torch.Tensor,
) -> torch.Tensor:
    """CLIP's multi-head attention pool for one query per image and many key masks.

    ``query`` [B, C] (shared by all regions), ``key_value`` [B, N, C], ``allowed`` [B, Q, N]
    bool. The query and key projections are computed once per image, the softmax once per
    region over its allowed keys only. Returns the projected outputs [B, Q, E]; a region with
    no allowed key gets zero attention, i.e. the output bias.
    """
    batch, tokens, channels = key_value.shape
    heads = int(pool.num_heads)
    head_dim = channels // heads
    q = F.linear(query, pool.q_proj.weight, pool.q_proj.bias).view(batch, heads, 1, head_dim)
    k = F.linear(key_value, pool.k_proj.weight, pool.k_proj.bias).view(batch, tokens, heads, head_dim)
    v = F.linear(key_value, pool.v_proj.weight, pool.v_proj.bias).view(batch, tokens, heads, head_dim)
    scores = torch.matmul(q * head_dim ** -0.5, k.permute(0, 2, 3, 1)).squeeze(2)  # [B, heads, N]
    scores = scores.unsqueeze(1).masked_fill(~allowed.unsqueeze(2), float("-inf"))  # [B, Q, heads, N]
    peak = scores.amax(-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).min)
    weights = torch.exp(scores - peak)  # exactly 0 on blocked keys
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
    pooled = torch.einsum("bqhn,bnhd->bqhd", weights, v).reshape(batch, -1, channels)
    return F.linear(pooled, pool.c_proj.weight, pool.c_proj.bias)


BACKBONE_CLASSES: Mapping[str, type] = {"convnext": ConvNeXtCLIPBackbone, "resnet": ResNetCLIPBackbone}


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
