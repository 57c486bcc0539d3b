"""Instance inference: the top-k (query, class) pairs of thing classes, each with its query's
binary mask and score = class probability * mean sigmoid inside the mask."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fcclip_core.postprocess.mask_scorer import QueryVisitor, count_true
from fcclip_core.results import InstanceResult, boxes_from_projections


class Instances(QueryVisitor):
    """Official instance inference, sorted by final score.

    Each distinct query's mask (logit > 0) and mean sigmoid inside it are computed once and
    shared by all its (query, class) pairs. Masks, scores and box projections stay on the
    device of the masks until ``result`` copies them to the host once.
    """

    needs_binary = True

    def __init__(self, mask_cls_logprobs: torch.Tensor, things: torch.Tensor, topk: int,
                 height: int, width: int) -> None:
        num_classes = mask_cls_logprobs.shape[-1] - 1
        cls = F.softmax(mask_cls_logprobs, dim=-1)[:, :-1]
        top_scores, top_idx = cls.flatten().topk(min(topk, cls.numel()), sorted=True)
        top_scores, top_idx = top_scores.cpu(), top_idx.cpu()
        query, label = top_idx // num_classes, top_idx % num_classes
        keep = things[label]
        self.query, self.label, self.class_score = query[keep], label[keep], top_scores[keep]
        self.queries, self.which = torch.unique(self.query, return_inverse=True)
        self.height, self.width = height, width
        self.masks: torch.Tensor | None = None  # [distinct, H, W] bool, device of the masks
        self.mask_score: torch.Tensor | None = None
        self.rows_any: torch.Tensor | None = None
        self.cols_any: torch.Tensor | None = None

    def _allocate(self, dev: torch.device) -> None:
        d, h, w = self.queries.numel(), self.height, self.width
        self.masks = torch.zeros((d, h, w), dtype=torch.bool, device=dev)
        self.mask_score = torch.zeros(d, dtype=torch.float32, device=dev)
        self.rows_any = torch.zeros((d, h), dtype=torch.bool, device=dev)
        self.cols_any = torch.zeros((d, w), dtype=torch.bool, device=dev)

    def visit(self, rows: torch.Tensor, pos: torch.Tensor, binary: torch.Tensor | None,
              sig: torch.Tensor) -> None:
        assert binary is not None
        if self.masks is None:
            self._allocate(sig.device)
        assert self.masks is not None and self.mask_score is not None
        assert self.rows_any is not None and self.cols_any is not None
        # official: (sig * binary.float()).sum / (binary.float().sum + 1e-6), row by row, in
        # float32 (the float mask promotes half-precision logits)
        mask = binary if sig.dtype == torch.float32 else binary.to(torch.float32)
        total = (sig * mask).flatten(1).sum(1)
        count = count_true(binary).to(total.dtype)
        self.mask_score[pos] = (total / (count + 1e-6))[rows].to(torch.float32)
        ours = binary.index_select(0, rows)
        self.masks[pos] = ours
        self.rows_any[pos] = ours.any(2)
        self.cols_any[pos] = ours.any(1)

    def result(self) -> InstanceResult:
        """Results best score first; masks cross to the host in one copy."""
        if self.masks is None:
            self._allocate(torch.device("cpu"))
        assert self.masks is not None and self.mask_score is not None
        assert self.rows_any is not None and self.cols_any is not None
        scores = self.class_score * self.mask_score.cpu()[self.which]
        order = torch.sort(scores, descending=True, stable=True).indices
        source = self.which[order]
        masks = self.masks.index_select(0, source.to(self.masks.device)).cpu().numpy()
        boxes = boxes_from_projections(self.rows_any.cpu().numpy(), self.cols_any.cpu().numpy())
        return InstanceResult(
            masks=masks, scores=scores.float().numpy()[order.numpy()],
            classes=self.label.numpy().astype("int64")[order.numpy()],
            query_indices=self.query.numpy().astype("int64")[order.numpy()],
            boxes=boxes[source.numpy()],
            class_scores=self.class_score.float().numpy()[order.numpy()])
