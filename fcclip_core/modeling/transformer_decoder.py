"""FC-CLIP's masked-attention transformer decoder (Mask2Former's, with a CLIP-space class head).

Learned queries cross-attend to one pixel-decoder level per layer (round robin, coarse to
fine), restricted to where the previous prediction's mask is on (sigmoid >= 0.5; a query whose
mask is empty everywhere attends everywhere), then self-attend and pass a feed-forward block.
After the queries are read out (and before every layer) a prediction head gives each query
- mask logits: an MLP embedding dotted with the per-pixel mask features;
- a CLIP-space embedding: an MLP of (projected mask-pooled mask features + normalised query),
  classified against the text embeddings (see ``classification.py``).

Only the last layer's full-resolution masks and class logits are needed at inference; the
intermediate heads need only their attention masks, at the size of the next layer's level, so
those are computed from mask features resized once per level (bilinear resizing is linear, so
this equals resizing the full-resolution logits up to float rounding). ``return_aux=True`` adds
every intermediate prediction at full resolution, as the official model records them.
Parameter names follow the official state-dict layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcclip_core.config import DecoderConfig
from fcclip_core.modeling.classification import TextClassifier, classification_logits
from fcclip_core.modeling.mask_pooling import mask_logits, mask_pool
from fcclip_core.modeling.position_encoding import PositionEmbeddingSine


def multihead_attention(
    attn: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    blocked: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Batch-first attention with the weights of ``attn`` (query [B, Lq, C], key/value [B, Lk, C]).

    ``blocked`` [B, heads or 1, Lq, Lk] bool marks pairs that may not attend.
    """
    batch, lq, dim = query.shape
    heads = attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, -1, heads, dim // heads).transpose(1, 2)

    q = split(F.linear(query, w_q, b_q))
    k = split(F.linear(key, w_k, b_k))
    v = split(F.linear(value, w_v, b_v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if blocked is None else ~blocked)
    return attn.out_proj(out.transpose(1, 2).reshape(batch, lq, dim))


def xavier_init_matrices(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    def __init__(self, dim: int, heads: int, pre_norm: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=0.0)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm
        xavier_init_matrices(self)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = self.norm(tgt)
            return tgt + multihead_attention(self.self_attn, x + query_pos, x + query_pos, x)
        q = tgt + query_pos
        return self.norm(tgt + multihead_attention(self.self_attn, q, q, tgt))


class CrossAttentionLayer(nn.Module):
    def __init__(self, dim: int, heads: int, pre_norm: bool):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=0.0)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm
        xavier_init_matrices(self)

    def forward(self, tgt, memory, blocked, pos, query_pos) -> torch.Tensor:
        if self.pre_norm:
            x = self.norm(tgt)
            return tgt + multihead_attention(self.multihead_attn, x + query_pos, memory + pos, memory, blocked)
        attended = multihead_attention(self.multihead_attn, tgt + query_pos, memory + pos, memory, blocked)
        return self.norm(tgt + attended)


class FFNLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, pre_norm: bool):
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.pre_norm = pre_norm
        xavier_init_matrices(self)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            return tgt + self.linear2(F.relu(self.linear1(self.norm(tgt)), inplace=True))
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt), inplace=True)))


class MLP(nn.Module):
    """Linear layers with ReLU between them (keys ``layers.<i>``)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < last:
                x = F.relu(x, inplace=True)
        return x


@dataclass
class DecoderOutput:
    pred_logits: torch.Tensor  # [B, Q, K + 1] in-vocabulary logits of the last layer
    pred_masks: torch.Tensor  # [B, Q, H/4, W/4] mask logits of the last layer
    aux_pred_logits: List[torch.Tensor] = field(default_factory=list)  # before layer 0, after layers 0..L-2
    aux_pred_masks: List[torch.Tensor] = field(default_factory=list)
    # per layer (with return_aux): smallest |attention-mask logit| and its query, i.e. how close the
    # closest attention decision came to its threshold
    attention_margins: List[Tuple[float, int]] = field(default_factory=list)


class MultiScaleMaskedTransformerDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig, in_channels: int, mask_dim: int, embed_dim: int):
        super().__init__()
        self.config = cfg
        dim = cfg.hidden_dim
        self.num_heads = cfg.heads
        self.num_layers = cfg.num_layers
        self.num_feature_levels = cfg.num_feature_levels
        self.pe_layer = PositionEmbeddingSine(dim // 2)
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(dim, cfg.heads, cfg.pre_norm) for _ in range(cfg.num_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(dim, cfg.heads, cfg.pre_norm) for _ in range(cfg.num_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(dim, cfg.ffn_dim, cfg.pre_norm) for _ in range(cfg.num_layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.query_feat = nn.Embedding(cfg.num_queries, dim)
        self.query_embed = nn.Embedding(cfg.num_queries, dim)
        self.level_embed = nn.Embedding(cfg.num_feature_levels, dim)
        self.input_proj = nn.ModuleList()
        for _ in range(cfg.num_feature_levels):
            if in_channels != dim or cfg.enforce_input_proj:
                conv = nn.Conv2d(in_channels, dim, kernel_size=1)
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.zeros_(conv.bias)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Sequential())
        self.mask_embed = MLP(dim, dim, mask_dim, 3)
        self._mask_pooling_proj = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.class_embed = MLP(dim, dim, embed_dim, 3)
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
        # True: attention masks from the full-resolution mask logits, resized (the official
        # order of operations, for checks); False: from mask features resized per level.
        self.exact_attention_masks = False

    # ------------------------------------------------------------------ heads

    def _query_readout(self, output: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        decoder_output = self.decoder_norm(output)
        return decoder_output, self.mask_embed(decoder_output)

    def _class_logits(self, decoder_output, masks, mask_features, classifier) -> torch.Tensor:
        pooled = self._mask_pooling_proj(mask_pool(mask_features, masks))
        return classification_logits(self.class_embed(pooled + decoder_output), classifier, self.logit_scale)

    def _blocked(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """Attention mask [B, 1, Q, hw]: True where the query's mask is off; empty masks see all."""
        blocked = mask_logits.flatten(2).sigmoid() < 0.5
        blocked &= ~blocked.all(-1, keepdim=True)
        return blocked.unsqueeze(1)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        multi_scale_features: List[torch.Tensor],
        mask_features: torch.Tensor,
        classifier: TextClassifier,
        return_aux: bool = False,
    ) -> DecoderOutput:
        if len(multi_scale_features) != self.num_feature_levels:
            raise ValueError(f"expected {self.num_feature_levels} feature levels, got {len(multi_scale_features)}")
        src, pos, sizes = [], [], []
        for level, x in enumerate(multi_scale_features):
            sizes.append(tuple(x.shape[-2:]))
            pos.append(self.pe_layer(x).flatten(2).transpose(1, 2))
            projected = self.input_proj[level](x).flatten(2) + self.level_embed.weight[level][None, :, None]
            src.append(projected.transpose(1, 2))
        batch = src[0].shape[0]
        # mask features at each level's size, for the intermediate attention masks
        level_mask_features = [] if self.exact_attention_masks else [
            F.interpolate(mask_features, size=size, mode="bilinear", align_corners=False) for size in sizes]

        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)
        output = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)
        aux_logits: List[torch.Tensor] = []
        aux_masks: List[torch.Tensor] = []
        attention_margins: List[Tuple[float, int]] = []

        for layer in range(self.num_layers + 1):
            decoder_output, mask_embed = self._query_readout(output)
            if layer == self.num_layers:
                break
            if return_aux:
                masks = mask_logits(mask_embed, mask_features)
                aux_masks.append(masks)
                aux_logits.append(self._class_logits(decoder_output, masks, mask_features, classifier))
            level = layer % self.num_feature_levels
            if self.exact_attention_masks:
                full = aux_masks[-1] if return_aux else mask_logits(mask_embed, mask_features)
                attn_logits = F.interpolate(full, size=sizes[level], mode="bilinear", align_corners=False)
            else:
                attn_logits = mask_logits(mask_embed, level_mask_features[level])
            blocked = self._blocked(attn_logits)
            if return_aux:
                per_query = attn_logits.abs().flatten(2).amin(-1)  # [B, Q]
                closest = int(per_query.amin(0).argmin())
                attention_margins.append((float(per_query[:, closest].min()), closest))
            output = self.transformer_cross_attention_layers[layer](output, src[level], blocked, pos[level], query_pos)
            output = self.transformer_self_attention_layers[layer](output, query_pos)
            output = self.transformer_ffn_layers[layer](output)

        pred_masks = mask_logits(mask_embed, mask_features)
        pred_logits = self._class_logits(decoder_output, pred_masks, mask_features, classifier)
        return DecoderOutput(pred_logits, pred_masks, aux_logits, aux_masks, attention_margins)
