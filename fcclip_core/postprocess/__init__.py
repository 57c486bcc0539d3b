"""FC-CLIP inference post-processing: semantic, panoptic and instance results from the
decoder's per-query class log-probabilities and mask logits.

Each task is its own short module over one shared mask scorer (``mask_scorer``):

- ``semantic``: all queries at every pixel, one band of output rows at a time
  (``resize.BandResizer``: bit-identical to the official first resize step, within float32
  rounding of the second, so its argmax only differs where the official top-2 scores tie
  within that noise);
- ``panoptic`` and ``instance``: only the queries they need, each upsampled once with the
  official resize in chunks, so their mask logits and every decision are bit-identical.

Peak extra memory is a small multiple of ``PostprocessConfig.chunk_bytes`` plus the outputs.
Everything runs on the device of the inputs; per frame the results cross to the host once
(plus a few per-frame counts), never once per query. The official functions, ported step by
step on full tensors for parity checks, live in ``fcclip_core.tools.reference_postprocess``.

Inputs: ``mask_cls_logprobs`` [Q, K+1] = log(class probabilities + 1e-8), the last column
being "void"; mask logits [Q, h, w] of the *padded* network input (the decoder predicts them
at 1/4 of the padded size). Scores are computed in the inputs' dtype, as the official code does;
the model hands float32 to post-processing whatever its precision (``fcclip_core.precision``).
"""
from __future__ import annotations

from typing import Sequence

import torch

from fcclip_core.postprocess.config import PostprocessConfig
from fcclip_core.postprocess.inputs import check_classes, check_geometry, squeeze_masks
from fcclip_core.postprocess.instance import Instances
from fcclip_core.postprocess.mask_scorer import MaskSource, mask_source, score_queries
from fcclip_core.postprocess.panoptic import Panoptic
from fcclip_core.postprocess.resize import BandResizer, mask_logits_to_image
from fcclip_core.postprocess.semantic import semantic
from fcclip_core.results import InstanceResult, PanopticResult, SemanticResult

__all__ = [
    "PostprocessConfig", "postprocess", "mask_logits_to_image", "panoptic_inference",
    "instance_inference", "BandResizer",
]


def postprocess(mask_cls_logprobs: torch.Tensor, mask_logits_low_res: torch.Tensor,
                padded_hw: Sequence[int], resized_hw: Sequence[int], output_hw: Sequence[int],
                thing_mask: Sequence[bool] | torch.Tensor, labels: Sequence[str],
                cfg: PostprocessConfig | None = None,
                ) -> tuple[SemanticResult | None, PanopticResult | None, InstanceResult | None]:
    """All enabled results for one image from the decoder outputs, memory-lean.

    ``mask_logits_low_res`` [Q, h, w] are the decoder's mask logits of the padded input
    (``padded_hw``); ``resized_hw`` is the network input before padding and ``output_hw``
    the size results are wanted at (the original image). Same decisions as the official
    chain; panoptic and instance share one pass over the queries they need.
    """
    cfg = cfg or PostprocessConfig()
    low = squeeze_masks(mask_logits_low_res, "mask_logits_low_res")
    things = check_classes(mask_cls_logprobs, low.shape[0], thing_mask, labels)
    padded, resized, output = check_geometry(padded_hw, resized_hw, output_hw)
    with torch.no_grad():
        source = mask_source(low, padded, resized, output, cfg.chunk_bytes)
        sem = semantic(mask_cls_logprobs, source, cfg.keep_semantic_probs) if cfg.semantic_on else None
        pan = (Panoptic(mask_cls_logprobs, things, labels, cfg.object_mask_threshold,
                        cfg.overlap_threshold) if cfg.panoptic_on else None)
        inst = (Instances(mask_cls_logprobs, things, cfg.topk_per_image, *output)
                if cfg.instance_on else None)
        score_queries(source, [v for v in (pan and pan.pixels, inst) if v is not None])
        return sem, pan.result(*output) if pan else None, inst.result() if inst else None


def panoptic_inference(mask_cls_logprobs: torch.Tensor, mask_logits: torch.Tensor,
                       thing_mask: Sequence[bool] | torch.Tensor, labels: Sequence[str],
                       object_mask_threshold: float = 0.0, overlap_threshold: float = 0.8,
                       chunk_bytes: int = PostprocessConfig.chunk_bytes) -> PanopticResult:
    """Official panoptic decisions from full-resolution mask logits [Q, H, W]."""
    mask_logits = squeeze_masks(mask_logits, "mask_logits")
    things = check_classes(mask_cls_logprobs, mask_logits.shape[0], thing_mask, labels)
    with torch.no_grad():
        source = MaskSource(mask_logits, chunk_bytes)
        pan = Panoptic(mask_cls_logprobs, things, labels, object_mask_threshold, overlap_threshold)
        score_queries(source, [pan.pixels])
        return pan.result(source.height, source.width)


def instance_inference(mask_cls_logprobs: torch.Tensor, mask_logits: torch.Tensor,
                       thing_mask: Sequence[bool] | torch.Tensor, topk: int = 100,
                       chunk_bytes: int = PostprocessConfig.chunk_bytes) -> InstanceResult:
    """Official instance results from full-resolution mask logits [Q, H, W], best score first."""
    mask_logits = squeeze_masks(mask_logits, "mask_logits")
    things = check_classes(mask_cls_logprobs, mask_logits.shape[0], thing_mask, None)
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    with torch.no_grad():
        source = MaskSource(mask_logits, chunk_bytes)
        inst = Instances(mask_cls_logprobs, things, topk, source.height, source.width)
        score_queries(source, [inst])
        return inst.result()
