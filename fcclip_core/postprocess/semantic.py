"""Semantic inference: per pixel, the class with the highest sum_q p(class | q) * sigmoid(mask_q)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fcclip_core.postprocess.mask_scorer import MaskSource, row_bands
from fcclip_core.results import SemanticResult


def semantic(mask_cls_logprobs: torch.Tensor, source: MaskSource,
             keep_probs: bool) -> SemanticResult:
    """Argmax class and its score per pixel, one band of rows at a time.

    The bands fill tensors on the mask logits' device; the result crosses to the host once.
    """
    cls = F.softmax(mask_cls_logprobs, dim=-1)[..., :-1]
    k = cls.shape[1]
    h, w, dev = source.height, source.width, source.device
    labels = torch.empty((h, w), dtype=torch.int32, device=dev)
    scores = torch.empty((h, w), dtype=torch.float32, device=dev)
    probs = torch.empty((k, h, w), dtype=torch.float32, device=dev) if keep_probs else None
    for r0, r1 in row_bands(h, source.rows_per_band(k)):
        sem = torch.einsum("qc,qhw->chw", cls, source.rows(r0, r1).sigmoid())
        top, best = sem.max(0)  # first maximum on ties, like argmax
        labels[r0:r1] = best
        scores[r0:r1] = top
        if probs is not None:
            probs[:, r0:r1] = sem
    return SemanticResult(labels=labels.cpu().numpy(), scores=scores.cpu().numpy(),
                          probs=None if probs is None else probs.cpu().numpy())
