"""The FC-CLIP network: frozen CLIP backbone, pixel decoder, masked-attention decoder, and the
in/out-of-vocabulary classifier ensemble, in one forward pass.

Input: normalised, zero-padded images [B, 3, H, W] (H, W multiples of the size divisibility;
see ``fcclip_core.preprocess``) and the text classifier (one row per class synonym, the number
of synonyms per class, which classes are "seen"). Output: per-query mask logits at stride 4 of
the padded input and per-query class log-probabilities (void last), which the semantic,
panoptic and instance post-processors all consume.

Module names mirror the official state-dict layout (``backbone.clip_model.*``,
``sem_seg_head.pixel_decoder.*``, ``sem_seg_head.predictor.*``, ``void_embedding``), so the
checkpoint key mapping is the identity.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn

from fcclip_core.config import ModelConfig
from fcclip_core.modeling.backbone import CLIPBackbone, build_backbone
from fcclip_core.modeling.classification import TextClassifier, classification_logits, geometric_ensemble
from fcclip_core.modeling.mask_pooling import masks_on_grid
from fcclip_core.modeling.pixel_decoder import MSDeformAttnPixelDecoder
from fcclip_core.modeling.transformer_decoder import DecoderOutput, MultiScaleMaskedTransformerDecoder
from fcclip_core.precision import autocast


class FCCLIPHead(nn.Module):
    """Pixel decoder + transformer decoder (the official ``sem_seg_head``)."""

    def __init__(self, cfg: ModelConfig, channels: Dict[str, int], strides: Dict[str, int]):
        super().__init__()
        self.pixel_decoder = MSDeformAttnPixelDecoder(cfg.pixel_decoder, channels, strides)
        self.predictor = MultiScaleMaskedTransformerDecoder(
            cfg.decoder, in_channels=cfg.pixel_decoder.conv_dim, mask_dim=cfg.pixel_decoder.mask_dim,
            embed_dim=cfg.embed_dim)


@dataclass
class FCCLIPOutput:
    pred_masks: torch.Tensor  # [B, Q, H/4, W/4] mask logits on the padded input grid
    pred_logits: torch.Tensor  # [B, Q, K + 1] in-vocabulary logits (void last)
    out_vocab_logits: torch.Tensor  # [B, Q, K + 1] out-of-vocabulary logits (void last)
    mask_cls_logprobs: torch.Tensor  # [B, Q, K + 1] final class log-probabilities (void last)
    intermediates: Dict[str, Any] = field(default_factory=dict)  # filled when asked for


class FCCLIP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.backbone: CLIPBackbone = build_backbone(cfg.backbone)
        if self.backbone.embed_dim != cfg.embed_dim:
            raise ValueError(f"CLIP embed dim {self.backbone.embed_dim} differs from the config's {cfg.embed_dim}")
        self.sem_seg_head = FCCLIPHead(cfg, self.backbone.output_channels(), self.backbone.output_strides())
        self.void_embedding = nn.Embedding(1, cfg.embed_dim)
        self.load_report = None  # set by build_model: what the checkpoint load did
        self.eval()

    @property
    def clip_model(self) -> nn.Module:
        """The open_clip CLIP model (its text tower encodes the vocabulary)."""
        return self.backbone.clip_model

    @property
    def size_divisibility(self) -> int:
        return int(self.config.input.size_divisibility)

    def prepare_for_inference(self) -> "FCCLIP":
        """Run once the weights are in place: memory layouts for speed, eval mode."""
        self.backbone.prepare_for_inference()
        return self.eval()

    def text_classifier(
        self,
        embeddings: torch.Tensor,
        synonym_counts: Sequence[int] | torch.Tensor,
        seen: Sequence[bool] | torch.Tensor,
    ) -> TextClassifier:
        """The classifier for a vocabulary: its synonym rows plus this model's void row."""
        return TextClassifier.build(embeddings, synonym_counts, seen, self.void_embedding.weight)

    def forward_features(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Backbone features ``stem``, ``res2``..``res5`` and ``clip_vis_dense``."""
        self._check_images(images)
        return self.backbone.extract_features(images)

    def forward(
        self,
        images: torch.Tensor,
        text_embeddings: torch.Tensor | TextClassifier,
        synonym_counts: Optional[Sequence[int] | torch.Tensor] = None,
        seen: Optional[Sequence[bool] | torch.Tensor] = None,
        *,
        return_intermediates: bool = False,
        autocast_dtype: Optional[torch.dtype] = None,
    ) -> FCCLIPOutput:
        """Segment ``images`` [B, 3, H, W] (normalised, padded) against a vocabulary.

        The vocabulary is either ``text_embeddings`` [S, E] with ``synonym_counts`` [K] and
        ``seen`` [K], or a ready ``TextClassifier``. ``return_intermediates`` keeps every
        intermediate tensor (for parity checks), at the cost of memory and a little time.
        ``autocast_dtype`` (bf16 or fp16; None = float32) runs the backbone, pixel decoder and
        transformer decoder under autocast; region pooling, the classifiers and the ensemble
        stay float32 (``fcclip_core.precision``).
        """
        if isinstance(text_embeddings, TextClassifier):
            classifier = text_embeddings
        else:
            if synonym_counts is None or seen is None:
                raise ValueError("give synonym_counts and seen with the text embeddings (or a TextClassifier)")
            classifier = self.text_classifier(text_embeddings, synonym_counts, seen)
        with torch.inference_mode():
            return self._forward(images, classifier, return_intermediates, autocast_dtype)

    def _forward(self, images: torch.Tensor, classifier: TextClassifier, keep: bool,
                 autocast_dtype: Optional[torch.dtype] = None) -> FCCLIPOutput:
        inter: Dict[str, Any] = {}
        with autocast(images.device, autocast_dtype):
            features = self.forward_features(images)
            mask_features, multi_scale = self.sem_seg_head.pixel_decoder(features)
            decoded: DecoderOutput = self.sem_seg_head.predictor(
                multi_scale, mask_features, classifier, return_aux=keep)
        if keep:
            inter["backbone"] = dict(features)
            inter["pixel_decoder"] = {
                "mask_features": mask_features,
                "transformer_encoder_features": multi_scale[0],
                "multi_scale_features": list(multi_scale),
            }
            inter["decoder"] = {
                "pred_logits": decoded.pred_logits,
                "pred_masks": decoded.pred_masks,
                "aux_pred_logits": torch.stack(decoded.aux_pred_logits) if decoded.aux_pred_logits else None,
                "aux_pred_masks": torch.stack(decoded.aux_pred_masks) if decoded.aux_pred_masks else None,
            }
            inter["decoder_attention_margins"] = decoded.attention_margins  # [(margin, query)] per layer
            inter["text_classifier_with_void"] = classifier.weights
        del multi_scale

        # float32 from here on: mask pooling sums, the region head, logits and the ensemble
        clip_dense = features["clip_vis_dense"].float()
        del features
        pred_masks = decoded.pred_masks.float()
        mask_for_pooling = masks_on_grid(pred_masks, clip_dense.shape[-2:])
        record: Optional[Dict[str, torch.Tensor]] = {} if keep else None
        region_embeddings = self.backbone.embed_regions(clip_dense, mask_for_pooling, record=record)
        out_vocab_logits = classification_logits(region_embeddings, classifier, self.backbone.logit_scale)

        valid = None
        if self.config.inference.ensemble_on_valid_mask:
            valid = (mask_for_pooling > 0).flatten(2).any(-1)
        inf = self.config.inference
        ensemble = geometric_ensemble(
            decoded.pred_logits, out_vocab_logits, classifier.seen, inf.ensemble_alpha, inf.ensemble_beta, valid)
        if keep:
            inter["mask_for_pooling"] = mask_for_pooling
            inter.update(record or {})
            inter["pooled_clip_embedding"] = region_embeddings
            inter["out_vocab_logits_with_void"] = out_vocab_logits
            if valid is not None:
                weight = valid.to(mask_for_pooling.dtype).unsqueeze(-1)  # [B, Q, 1]
                inter["valid_masking"] = weight
                per_class = weight.expand(-1, -1, classifier.num_classes)
                inter["ensemble_alpha"] = inf.ensemble_alpha * per_class
                inter["ensemble_beta"] = inf.ensemble_beta * per_class
            inter["in_vocab_probs"] = ensemble.in_vocab_probs
            inter["out_vocab_probs"] = ensemble.out_vocab_probs
            inter["ensemble_cls_results"] = ensemble.ensemble_logits
            inter["is_void_prob"] = ensemble.is_void_prob
            inter["mask_cls_probs"] = ensemble.mask_cls_probs
            inter["mask_cls_final_logprobs"] = ensemble.mask_cls_logprobs
        return FCCLIPOutput(
            pred_masks=pred_masks,
            pred_logits=decoded.pred_logits,
            out_vocab_logits=out_vocab_logits,
            mask_cls_logprobs=ensemble.mask_cls_logprobs,
            intermediates=inter,
        )

    def _check_images(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        div = self.size_divisibility
        if div > 1 and (images.shape[-2] % div or images.shape[-1] % div):
            raise ValueError(
                f"image size {tuple(images.shape[-2:])} is not a multiple of {div}: pad the normalised images "
                "(fcclip_core.preprocess.normalize_and_pad)")
