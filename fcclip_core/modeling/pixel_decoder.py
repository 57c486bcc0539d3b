"""Multi-scale deformable-attention pixel decoder (Mask2Former's, as FC-CLIP configures it).

The coarsest backbone levels (res3..res5 by default) are projected to ``conv_dim`` channels and
refined jointly by a deformable-attention transformer encoder; finer levels (res2) are merged
FPN-style (lateral 1x1 conv + bilinearly upsampled coarser map + 3x3 conv). Outputs: the
per-pixel ``mask_features`` (stride 4, ``mask_dim`` channels) and the three coarsest refined
maps for the transformer decoder (strides 32, 16, 8).

The attention core runs only through ``fcclip_core.ops.ms_deform_attn``. Module and parameter
names follow the official state-dict layout so released checkpoints load as they are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fcclip_core.config import PixelDecoderConfig
from fcclip_core.modeling.position_encoding import PositionEmbeddingSine
from fcclip_core.ops import ms_deform_attn


class Conv2dNorm(nn.Conv2d):
    """Conv2d followed by an optional norm and activation (keys ``weight``, ``norm.*``)."""

    def __init__(self, *args, norm: Optional[nn.Module] = None, activation: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.relu(x, inplace=True) if self.activation else x


def make_norm(kind: str, channels: int, groups: int) -> Optional[nn.Module]:
    if kind == "GN":
        return nn.GroupNorm(groups, channels)
    if kind in ("", None):
        return None
    raise ValueError(f"pixel decoder norm {kind!r} is not supported (use 'GN' or '')")


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention: each query samples ``points`` locations per head and
    level around its reference point, at offsets and with weights predicted from the query."""

    def __init__(self, dim: int, levels: int, heads: int, points: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.levels, self.heads, self.points = dim, levels, heads, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable-DETR init: zero offset weights, offsets biased to a ring per head."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2.0 * math.pi / self.heads)
        ring = torch.stack([angles.cos(), angles.sin()], -1)
        ring = ring / ring.abs().max(-1, keepdim=True)[0]
        scale = torch.arange(1, self.points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        grid = ring.view(self.heads, 1, 1, 2).repeat(1, self.levels, self.points, 1) * scale
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: torch.Tensor, value_input: torch.Tensor, grid: "SamplingGrid") -> torch.Tensor:
        """query [N, Lq, C] (with positions), value_input [N, S, C] -> [N, Lq, C]."""
        n, num_queries, _ = query.shape
        value = self.value_proj(value_input).view(n, value_input.shape[1], self.heads, self.dim // self.heads)
        offsets = self.sampling_offsets(query).view(n, num_queries, self.heads, -1)
        weights = self.attention_weights(query).view(n, num_queries, self.heads, self.levels * self.points)
        weights = weights.softmax(-1).view(n, num_queries, self.heads, self.levels, self.points)
        # location = reference point + offset / (W, H) of the level, one fused pass
        locations = torch.addcdiv(grid.base, offsets, grid.scale).view(
            n, num_queries, self.heads, self.levels, self.points, 2)
        out = ms_deform_attn(value, grid.spatial_shapes, grid.level_start_index, locations, weights)
        return self.output_proj(out)


@dataclass(frozen=True)
class SamplingGrid:
    """What the deformable attention needs about the flattened levels of one input size."""

    spatial_shapes: torch.Tensor  # [L, 2] long (H, W)
    level_start_index: torch.Tensor  # [L] long
    base: torch.Tensor  # [1, Lq, 1, L * P * 2]: each query's reference point (x, y), repeated per level and point
    scale: torch.Tensor  # [L * P * 2]: (W, H) of each level, repeated per point (offsets are in pixels)

    @classmethod
    def build(cls, shapes: Sequence[Tuple[int, int]], points: int, device: torch.device) -> "SamplingGrid":
        levels = len(shapes)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=device)
        sizes = [h * w for h, w in shapes]
        starts = [sum(sizes[:i]) for i in range(levels)]
        ref = reference_points_for(shapes, device)  # [Lq, 2]
        base = ref[None, :, None, None, :].expand(1, ref.shape[0], levels, points, 2).reshape(1, ref.shape[0], 1, -1)
        scale = spatial_shapes.flip(-1).to(torch.float32)[:, None, :].expand(levels, points, 2).reshape(-1)
        return cls(spatial_shapes, torch.as_tensor(starts, dtype=torch.long, device=device), base.contiguous(), scale)


class DeformableEncoderLayer(nn.Module):
    """Post-norm layer: deformable self-attention, then a ReLU feed-forward block."""

    def __init__(self, dim: int, ffn_dim: int, levels: int, heads: int, points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(dim, levels, heads, points)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, grid: SamplingGrid) -> torch.Tensor:
        src = self.norm1(src + self.self_attn(src + pos, src, grid))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src), inplace=True)))


class DeformableEncoder(nn.Module):
    def __init__(self, num_layers: int, **layer_args):
        super().__init__()
        self.layers = nn.ModuleList(DeformableEncoderLayer(**layer_args) for _ in range(num_layers))

    def forward(self, src: torch.Tensor, pos: torch.Tensor, grid: SamplingGrid) -> torch.Tensor:
        for layer in self.layers:
            src = layer(src, pos, grid)
        return src


def reference_points_for(shapes: Sequence[Tuple[int, int]], device: torch.device) -> torch.Tensor:
    """Pixel-centre reference points [sum(H*W), 2] (x, y) in [0, 1] of the flattened levels;
    without padding a query's point is the same on every level."""
    points = []
    for height, width in shapes:
        ys = torch.linspace(0.5, height - 0.5, height, dtype=torch.float32, device=device) / height
        xs = torch.linspace(0.5, width - 0.5, width, dtype=torch.float32, device=device) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), -1))
    return torch.cat(points, 0)


class DeformableTransformer(nn.Module):
    """Encoder-only deformable transformer over the flattened multi-scale maps."""

    def __init__(self, dim: int, heads: int, num_layers: int, ffn_dim: int, levels: int, points: int):
        super().__init__()
        self.points = points
        self.level_embed = nn.Parameter(torch.empty(levels, dim))
        nn.init.normal_(self.level_embed)
        self.encoder = DeformableEncoder(
            num_layers, dim=dim, ffn_dim=ffn_dim, levels=levels, heads=heads, points=points)
        for layer in self.encoder.layers:
            for linear in (layer.linear1, layer.linear2):
                nn.init.xavier_uniform_(linear.weight)
        self._grids: Dict[Tuple, SamplingGrid] = {}

    def sampling_grid(self, shapes: Tuple[Tuple[int, int], ...], device: torch.device) -> SamplingGrid:
        """Cached per input size and device."""
        key = (shapes, str(device))
        grid = self._grids.get(key)
        if grid is None:
            if len(self._grids) >= 32:
                self._grids.pop(next(iter(self._grids)))
            grid = self._grids[key] = SamplingGrid.build(shapes, self.points, device)
        return grid

    def forward(self, srcs: List[torch.Tensor], pos_embeds: List[torch.Tensor]) -> List[torch.Tensor]:
        """Refine maps [N, C, H_l, W_l] (coarse to fine); returns them in the same shapes."""
        shapes = tuple((int(s.shape[-2]), int(s.shape[-1])) for s in srcs)
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos_flat = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1) for lvl, p in enumerate(pos_embeds)], 1)
        memory = self.encoder(src_flat, pos_flat, self.sampling_grid(shapes, src_flat.device))
        batch = memory.shape[0]
        return [
            level.transpose(1, 2).reshape(batch, -1, h, w)
            for level, (h, w) in zip(memory.split([h * w for h, w in shapes], dim=1), shapes)
        ]


class MSDeformAttnPixelDecoder(nn.Module):
    def __init__(self, cfg: PixelDecoderConfig, input_channels: Dict[str, int], input_strides: Dict[str, int]):
        super().__init__()
        self.config = cfg
        missing = [f for f in cfg.in_features if f not in input_channels]
        if missing:
            raise ValueError(f"pixel decoder inputs {missing} are not backbone outputs {sorted(input_channels)}")
        self.in_features = sorted(cfg.in_features, key=lambda f: input_strides[f])  # fine to coarse
        self.transformer_in_features = sorted(cfg.transformer_in_features, key=lambda f: input_strides[f])
        conv_dim = cfg.conv_dim
        levels = len(self.transformer_in_features)

        # coarse to fine: res5, res4, res3
        self.input_proj = nn.ModuleList()
        for name in self.transformer_in_features[::-1]:
            proj = nn.Sequential(nn.Conv2d(input_channels[name], conv_dim, kernel_size=1),
                                 nn.GroupNorm(cfg.norm_groups, conv_dim))
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
            self.input_proj.append(proj)

        self.transformer = DeformableTransformer(
            dim=conv_dim, heads=cfg.encoder_heads, num_layers=cfg.encoder_layers,
            ffn_dim=cfg.encoder_ffn_dim, levels=levels, points=cfg.encoder_points)
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2)

        self.mask_features = nn.Conv2d(conv_dim, cfg.mask_dim, kernel_size=1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)
        self.num_output_levels = 3

        # FPN levels finer than the transformer's finest input (res2 for stride 8 -> 4)
        finest = min(input_strides[f] for f in self.transformer_in_features)
        self.num_fpn_levels = int(round(math.log2(finest) - math.log2(cfg.common_stride)))
        use_bias = cfg.norm == ""
        self.fpn_features = self.in_features[: self.num_fpn_levels]
        for index, name in enumerate(self.fpn_features):
            lateral = Conv2dNorm(input_channels[name], conv_dim, kernel_size=1, bias=use_bias,
                                 norm=make_norm(cfg.norm, conv_dim, cfg.norm_groups))
            output = Conv2dNorm(conv_dim, conv_dim, kernel_size=3, padding=1, bias=use_bias,
                                norm=make_norm(cfg.norm, conv_dim, cfg.norm_groups), activation=True)
            for conv in (lateral, output):
                nn.init.kaiming_uniform_(conv.weight, a=1)
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
            self.add_module(f"adapter_{index + 1}", lateral)
            self.add_module(f"layer_{index + 1}", output)

    def forward(self, features: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Returns ``mask_features`` [N, mask_dim, H/4, W/4] and the three coarsest refined maps
        (strides 32, 16, 8 for the default config)."""
        srcs, pos = [], []
        for proj, name in zip(self.input_proj, self.transformer_in_features[::-1]):
            x = features[name].float()
            srcs.append(proj(x))
            pos.append(self.pe_layer(x))
        out = self.transformer(srcs, pos)

        # top-down: each finer level adds the bilinearly upsampled coarser result
        for index in reversed(range(self.num_fpn_levels)):
            name = self.fpn_features[index]
            lateral = getattr(self, f"adapter_{index + 1}")
            output = getattr(self, f"layer_{index + 1}")
            y = lateral(features[name].float())
            y = y + F.interpolate(out[-1], size=y.shape[-2:], mode="bilinear", align_corners=False)
            out.append(output(y))

        return self.mask_features(out[-1]), out[: self.num_output_levels]
