"""The official FC-CLIP post-processing, ported step by step on full-resolution tensors.

Slow and memory-hungry on purpose: these are the oracles of the parity tests and
``fcclip_core.tools.parity``, and the "official" baseline of ``bench_postprocess``. The product
uses ``fcclip_core.postprocess``, which reaches the same decisions without [Q, H, W] tensors.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from fcclip_core.postprocess.inputs import check_classes, squeeze_masks
from fcclip_core.postprocess.panoptic import panoptic_decisions


def reference_semantic_inference(mask_cls_logprobs: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Official semantic scores [K, H, W]: sum_q softmax(cls)[q, k] * sigmoid(mask[q])."""
    mask_logits = squeeze_masks(mask_logits, "mask_logits")
    check_classes(mask_cls_logprobs, mask_logits.shape[0],
                  [False] * (mask_cls_logprobs.shape[-1] - 1), None)
    cls = F.softmax(mask_cls_logprobs, dim=-1)[..., :-1]
    return torch.einsum("qc,qhw->chw", cls, mask_logits.sigmoid())


def reference_panoptic_inference(mask_cls_logprobs: torch.Tensor, mask_logits: torch.Tensor,
                                 thing_mask: Sequence[bool] | torch.Tensor,
                                 object_mask_threshold: float = 0.0,
                                 overlap_threshold: float = 0.8,
                                 ) -> tuple[torch.Tensor, list[dict]]:
    """The official panoptic inference on full tensors: (id map [H, W] int32, segments_info).

    Every pixel measure is taken the official way (sigmoid of all queries, one argmax over
    all kept queries, per-query boolean masks); slow and memory-hungry on purpose, it is the
    oracle for the chunked path and the benchmark baseline. The decisions on those measures
    are ``panoptic_decisions``, checked against the official fixtures.
    """
    things = torch.as_tensor(thing_mask, dtype=torch.bool).reshape(-1)
    probs = F.softmax(mask_cls_logprobs, dim=-1)
    scores, classes = probs.max(-1)
    sig = mask_logits.sigmoid()
    keep = classes.ne(probs.shape[-1] - 1) & (scores > object_mask_threshold)
    cur_scores, cur_classes, cur_masks = scores[keep], classes[keep], sig[keep]
    segment_ids = torch.zeros(mask_logits.shape[-2:], dtype=torch.int32, device=mask_logits.device)
    if cur_masks.shape[0] == 0:
        return segment_ids, []
    owner = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    own = cur_masks >= 0.5
    kept = range(own.shape[0])
    classes_l = cur_classes.tolist()
    painted, creator = panoptic_decisions(
        own.flatten(1).sum(1).tolist(), [int((owner == k).sum()) for k in kept],
        [int(((owner == k) & own[k]).sum()) for k in kept], classes_l, things, overlap_threshold)
    for k, sid in enumerate(painted):
        if sid:
            segment_ids[(owner == k) & own[k]] = sid
    return segment_ids, [{"id": sid, "isthing": bool(things[classes_l[j]]),
                          "category_id": classes_l[j]} for sid, j in creator.items()]


def reference_instance_inference(mask_cls_logprobs: torch.Tensor, mask_logits: torch.Tensor,
                                 thing_mask: Sequence[bool] | torch.Tensor, topk: int = 100,
                                 ) -> dict[str, torch.Tensor]:
    """The official instance inference on full tensors (panoptic on: thing classes only).

    Returns pred_masks [N, H, W] bool, scores, pred_classes, query_index, class_score, in the
    (implementation-defined) order of an unsorted top-k.
    """
    things = torch.as_tensor(thing_mask, dtype=torch.bool).reshape(-1)
    num_classes = mask_cls_logprobs.shape[-1] - 1
    cls = F.softmax(mask_cls_logprobs, dim=-1)[:, :-1]
    top_scores, top_idx = cls.flatten(0, 1).topk(min(topk, cls.numel()), sorted=False)
    pred_classes = top_idx % num_classes
    query = top_idx // num_classes
    keep = things.to(pred_classes.device)[pred_classes]
    top_scores, pred_classes, query = top_scores[keep], pred_classes[keep], query[keep]
    logits = mask_logits[query]
    binary = (logits > 0).float()
    mask_scores = (logits.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (
        binary.flatten(1).sum(1) + 1e-6)
    return {"pred_masks": binary.bool(), "scores": top_scores * mask_scores,
            "pred_classes": pred_classes, "query_index": query, "class_score": top_scores}
