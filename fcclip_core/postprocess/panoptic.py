"""Panoptic inference: each pixel goes to the kept query with the highest score * sigmoid,
then the official loop decides, in query order, which queries become segments."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fcclip_core.postprocess.mask_scorer import QueryVisitor, count_true
from fcclip_core.results import PanopticResult, Segment, region_stats


class PanopticPixels(QueryVisitor):
    """Pixel ownership of the official panoptic loop, accumulated over chunks of queries.

    A pixel belongs to the first kept query (in query order) with the highest
    score * sigmoid, as ``argmax`` over all kept queries would say: within a chunk ``max``
    returns the first maximum, across chunks a strict '>' keeps the earlier query. Every
    accumulator lives on the device of the masks.
    """

    def __init__(self, kept: torch.Tensor, kept_scores: torch.Tensor) -> None:
        self.queries = kept
        self.scores = kept_scores
        self.best: torch.Tensor | None = None
        self.owner: torch.Tensor | None = None  # int32 position in kept
        self.owner_fg: torch.Tensor | None = None  # owner's sigmoid >= 0.5 there
        self.own_area: torch.Tensor | None = None  # int64 [kept], pixels with sigmoid >= 0.5

    def visit(self, rows: torch.Tensor, pos: torch.Tensor, binary: torch.Tensor | None,
              sig: torch.Tensor) -> None:
        dev, m = sig.device, sig.shape[0]
        if self.own_area is None:
            self.own_area = torch.zeros(self.queries.numel(), dtype=torch.int64, device=dev)
            self.scores = self.scores.to(dev, sig.dtype)
        # prob = score * sig on our rows (bitwise: 0 + x == x), -2 (never the max) elsewhere
        scale = torch.zeros(m, 1, 1, dtype=sig.dtype, device=dev)
        bias = torch.full((m, 1, 1), -2.0, dtype=sig.dtype, device=dev)
        scale[rows, 0, 0] = self.scores[pos]
        bias[rows] = 0.0
        prob = torch.addcmul(bias, sig, scale)
        top, arg = prob.max(0)
        del prob
        fg = sig.gather(0, arg[None])[0] >= 0.5
        chunk_pos = torch.full((m,), -1, dtype=torch.int32, device=dev)
        chunk_pos[rows] = pos.to(torch.int32)
        owner = torch.take(chunk_pos, arg)
        self.own_area[pos] = count_true(sig >= 0.5)[rows].to(torch.int64)
        if self.best is None:
            self.best, self.owner, self.owner_fg = top, owner, fg
            return
        better = top > self.best
        self.best = torch.where(better, top, self.best)
        self.owner = torch.where(better, owner, self.owner)
        self.owner_fg = torch.where(better, fg, self.owner_fg)


def panoptic_decisions(own_area: list[int], argmax_area: list[int], visible_area: list[int],
                       classes: list[int], things: torch.Tensor, overlap_threshold: float,
                       ) -> tuple[list[int], dict[int, int]]:
    """The order-dependent part of the official loop, on per-query pixel counts.

    Returns the segment id each kept query paints (0 = none) and, per segment id, the kept
    position that created it. ``visible_area`` > 0 implies the official "mask_area > 0 and
    original_area > 0"; stuff of a class already seen joins that class's first segment.
    """
    painted = [0] * len(classes)
    creator: dict[int, int] = {}
    stuff_segment: dict[int, int] = {}
    next_id = 0
    for j, c in enumerate(classes):
        if visible_area[j] == 0 or argmax_area[j] / own_area[j] < overlap_threshold:
            continue
        if not bool(things[c]):
            if c in stuff_segment:
                painted[j] = stuff_segment[c]
                continue
            stuff_segment[c] = next_id + 1
        next_id += 1
        painted[j] = next_id
        creator[next_id] = j
    return painted, creator


class Panoptic:
    """Panoptic inference for one image: which queries, their pixels, then the decisions."""

    def __init__(self, mask_cls_logprobs: torch.Tensor, things: torch.Tensor,
                 labels: Sequence[str], object_mask_threshold: float,
                 overlap_threshold: float) -> None:
        num_classes = mask_cls_logprobs.shape[-1] - 1
        scores, classes = F.softmax(mask_cls_logprobs, dim=-1).max(-1)
        keep = classes.ne(num_classes) & (scores > object_mask_threshold)
        self.kept = keep.nonzero().flatten().cpu()
        self.classes = classes[keep].cpu().tolist()
        self.scores = scores[keep].cpu()
        self.things, self.labels, self.overlap_threshold = things, labels, overlap_threshold
        self.pixels = PanopticPixels(self.kept, self.scores)

    def result(self, height: int, width: int) -> PanopticResult:
        """The id map and segments: the per-query pixel counts cross to the host in one copy."""
        px = self.pixels
        if px.owner is None or px.own_area is None:
            return PanopticResult(segment_ids=np.zeros((height, width), dtype=np.int32))
        n = self.kept.numel()
        owner = px.owner.flatten()
        counts = torch.stack([px.own_area, torch.bincount(owner, minlength=n),
                              torch.bincount(owner[px.owner_fg.flatten()], minlength=n)])
        own_area, argmax_area, visible_area = counts.cpu().tolist()
        painted, creator = panoptic_decisions(own_area, argmax_area, visible_area,
                                              self.classes, self.things, self.overlap_threshold)
        lut = torch.tensor(painted, dtype=torch.int32, device=px.owner.device)
        ids = (lut[px.owner] * px.owner_fg).to(torch.int32).cpu().numpy()
        stats = region_stats(ids, len(creator) + 1)
        segments = []
        for sid, j in creator.items():
            c = self.classes[j]
            x, y, bw, bh = (int(v) for v in stats.bbox[sid])
            segments.append(Segment(
                id=sid, category_id=c, label=str(self.labels[c]), isthing=bool(self.things[c]),
                score=float(self.scores[j]), area=int(stats.area[sid]), bbox=(x, y, bw, bh),
                centroid=(float(stats.centroid[sid, 0]), float(stats.centroid[sid, 1])),
                query_index=int(self.kept[j])))
        return PanopticResult(segment_ids=ids, segments=segments)
