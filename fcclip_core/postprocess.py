"""FC-CLIP inference post-processing: semantic, panoptic and instance results from the
decoder's per-query class log-probabilities and mask logits.

Two families of functions live here:

- ``mask_logits_to_image``, ``semantic_inference``, ``reference_panoptic_inference`` and
  ``reference_instance_inference`` follow the official implementation step by step on
  full-resolution tensors. They exist for parity checks and as the baseline of
  ``python -m fcclip_core.tools.bench_postprocess``.
- ``postprocess`` (and ``panoptic_inference`` / ``instance_inference`` on full-resolution
  logits) produce the same decisions without ever holding [Q, H, W] float tensors at once:
  panoptic and instance share one pass over chunks of the queries they need, upsampled on
  demand with the official resize (so their mask logits, and every decision, are
  bit-identical); semantic needs all queries at every pixel and works on bands of output
  rows (``BandResizer``: bit-identical to the first resize step, within float32 rounding of
  the second), so its scores agree to ~1e-6 relative and its argmax only differs where the
  official top-2 scores tie within that noise. Peak extra memory is a small multiple of
  ``PostprocessConfig.chunk_bytes`` plus the outputs.

Inputs: ``mask_cls_logprobs`` [Q, K+1] = log(class probabilities + 1e-8), the last column
being "void"; mask logits [Q, h, w] of the *padded* network input (the decoder predicts them
at 1/4 of the padded size). All torch, any device; results come back as numpy dataclasses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fcclip_core.results import (InstanceResult, PanopticResult, Segment, SemanticResult,
                                 boxes_from_projections, region_stats)

HW = tuple[int, int]
_SMALL_OUTPUT = 128  # out_h + out_w at or below which PyTorch CPU uses its separable kernel
_MIN_BAND_ROWS = 8  # semantic bands: each band re-reads a few source rows at its edges
_MIN_CHUNK_QUERIES = 4  # query chunks: each chunk costs a few passes over [H, W] on top

__all__ = [
    "PostprocessConfig", "postprocess", "mask_logits_to_image", "semantic_inference",
    "panoptic_inference", "instance_inference", "reference_panoptic_inference",
    "reference_instance_inference", "BandResizer",
]


@dataclass
class PostprocessConfig:
    """Which results to produce and the official thresholds (FC-CLIP eval configs)."""

    object_mask_threshold: float = 0.0  # panoptic keeps non-void queries with score > this
    overlap_threshold: float = 0.8  # min visible / own-mask area ratio of a panoptic segment
    topk_per_image: int = 100  # instance candidates: top-k (query, class) pairs
    semantic_on: bool = True
    panoptic_on: bool = True
    instance_on: bool = True
    keep_semantic_probs: bool = False  # also return the full [K, H, W] semantic scores
    # size of one float working tensor: a chunk of queries (at least 4) or a band of rows
    # (at least 8) at the output size
    chunk_bytes: int = 8 * 2**20

    def __post_init__(self) -> None:
        if self.topk_per_image < 1:
            raise ValueError(f"topk_per_image must be >= 1, got {self.topk_per_image}")
        if self.chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {self.chunk_bytes}")
        if not 0.0 <= self.overlap_threshold <= 1.0:
            raise ValueError(f"overlap_threshold must lie in [0, 1], got {self.overlap_threshold}")


# --------------------------------------------------------------------------- input checks

def _hw(value: Sequence[int], name: str) -> HW:
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (height, width) pair, got {value!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive, got {(h, w)}")
    return h, w


def _check_geometry(padded_hw: Sequence[int], resized_hw: Sequence[int],
                    output_hw: Sequence[int]) -> tuple[HW, HW, HW]:
    padded, resized, output = (_hw(padded_hw, "padded_hw"), _hw(resized_hw, "resized_hw"),
                               _hw(output_hw, "output_hw"))
    if resized[0] > padded[0] or resized[1] > padded[1]:
        raise ValueError(f"resized_hw {resized} must fit inside padded_hw {padded}")
    return padded, resized, output


def _squeeze_masks(mask_logits: torch.Tensor, name: str) -> torch.Tensor:
    if mask_logits.dim() == 4 and mask_logits.shape[0] == 1:
        mask_logits = mask_logits[0]
    if mask_logits.dim() != 3:
        raise ValueError(f"{name} must be [Q, H, W] (or [1, Q, H, W]), got {tuple(mask_logits.shape)}")
    if not mask_logits.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {mask_logits.dtype}")
    return mask_logits


def _check_classes(mask_cls_logprobs: torch.Tensor, num_queries: int,
                   thing_mask: Sequence[bool] | torch.Tensor,
                   labels: Sequence[str] | None) -> torch.Tensor:
    if mask_cls_logprobs.dim() == 3 and mask_cls_logprobs.shape[0] == 1:
        raise ValueError("mask_cls_logprobs must be [Q, K+1] for one image; drop the batch dim")
    if mask_cls_logprobs.dim() != 2 or mask_cls_logprobs.shape[1] < 2:
        raise ValueError(f"mask_cls_logprobs must be [Q, K+1] with K >= 1, got "
                         f"{tuple(mask_cls_logprobs.shape)}")
    if mask_cls_logprobs.shape[0] != num_queries:
        raise ValueError(f"mask_cls_logprobs has {mask_cls_logprobs.shape[0]} queries but the "
                         f"mask logits have {num_queries}")
    k = mask_cls_logprobs.shape[1] - 1
    things = torch.as_tensor(thing_mask, dtype=torch.bool).reshape(-1).cpu()
    if things.numel() != k:
        raise ValueError(f"thing_mask has {things.numel()} entries for {k} classes")
    if labels is not None and len(labels) != k:
        raise ValueError(f"labels has {len(labels)} names for {k} classes")
    return things


# --------------------------------------------------------------------------- resizing

def mask_logits_to_image(mask_logits: torch.Tensor, padded_hw: Sequence[int],
                         resized_hw: Sequence[int], output_hw: Sequence[int]) -> torch.Tensor:
    """Official resize chain: [Q, h, w] logits of the padded input -> [Q, H, W] at output size.

    Bilinear (align_corners=False) to the padded size, crop to the resized image (drop the
    padding), bilinear to the original image size. Materialises two [Q, ...] full-size
    tensors: use it on chunks of queries.
    """
    mask_logits = _squeeze_masks(mask_logits, "mask_logits")
    padded, resized, output = _check_geometry(padded_hw, resized_hw, output_hw)
    x = mask_logits.unsqueeze(0)
    if tuple(x.shape[-2:]) != padded:
        x = F.interpolate(x, size=padded, mode="bilinear", align_corners=False)
    x = x[:, :, : resized[0], : resized[1]]
    if resized != output:  # a same-size bilinear resize is an exact copy: skip it
        x = F.interpolate(x, size=output, mode="bilinear", align_corners=False)
    return x[0]


@dataclass(frozen=True)
class _AxisPlan:
    """Source indices and weights of a 1-D bilinear resize (align_corners=False)."""

    i0: np.ndarray  # [n_out] int64
    i1: np.ndarray
    w0: np.ndarray  # [n_out] float32
    w1: np.ndarray
    identity: bool


def _axis_plan(n_in: int, n_out: int) -> _AxisPlan:
    """PyTorch's source coordinates: src = max(0, (dst + 0.5) * n_in / n_out - 0.5), in float32.

    The CPU kernel evaluates ``scale * (dst + 0.5) - 0.5`` as one fused multiply-add; doing it
    in float64 and rounding once gives the same float32 coordinate.
    """
    d = np.arange(n_out)
    if n_in == n_out:
        return _AxisPlan(d, d, np.ones(n_out, np.float32), np.zeros(n_out, np.float32), True)
    scale = np.float64(np.float32(n_in) / np.float32(n_out))
    src = (scale * (d + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = i0 + (i0 < n_in - 1)
    return _AxisPlan(i0, i1, (np.float32(1) - lam).astype(np.float32), lam, False)


def _resample(x: torch.Tensor, dim: int, i0: np.ndarray, i1: np.ndarray, w0: np.ndarray,
              w1: np.ndarray) -> torch.Tensor:
    """out[..., j, ...] = x[..., i0[j], ...] * w0[j] + x[..., i1[j], ...] * w1[j] along ``dim``."""
    shape = [1] * x.dim()
    shape[dim] = len(i0)
    dev = x.device
    a = x.index_select(dim, torch.from_numpy(i0).to(dev))
    a.mul_(torch.from_numpy(w0).to(dev, x.dtype).view(shape))
    b = x.index_select(dim, torch.from_numpy(i1).to(dev))
    b.mul_(torch.from_numpy(w1).to(dev, x.dtype).view(shape))
    return a.add_(b)


class BandResizer:
    """``mask_logits_to_image`` restricted to a band of output rows, for all queries at once.

    Bilinear resizing is separable and local, so output rows [r0, r1) need only a few source
    rows. Step 1 (decoder resolution -> padded size) is an exact 4x upsampling, where every
    source coordinate is a dyadic fraction: running the official ``F.interpolate`` on a
    slice of source rows then gives bit-identical rows. Step 2 (crop -> output size) has an
    arbitrary ratio and is done here as a width pass then a height pass with PyTorch's
    coordinates and weights; it agrees with the full resize to float32 rounding (PyTorch's CPU
    kernel fuses multiply-adds, plain tensor ops round each product).
    """

    def __init__(self, mask_logits: torch.Tensor, padded_hw: Sequence[int],
                 resized_hw: Sequence[int], output_hw: Sequence[int]) -> None:
        self.low = _squeeze_masks(mask_logits, "mask_logits")
        self.padded, self.resized, self.output = _check_geometry(padded_hw, resized_hw, output_hw)
        h_in, w_in = self.low.shape[-2:]
        self.h1 = _axis_plan(h_in, self.padded[0])  # low-res rows -> padded rows
        self.w1 = _axis_plan(w_in, self.padded[1])
        self.h2 = _axis_plan(self.resized[0], self.output[0])  # crop rows -> output rows
        self.w2 = _axis_plan(self.resized[1], self.output[1])  # crop cols -> output cols
        self.sliceable = self.padded[0] == 4 * h_in

    def _padded_rows(self, c0: int, c1: int) -> torch.Tensor:
        """Rows [c0, c1) of the step-1 result, cropped to the resized width: [Q, n, w]."""
        h1, w = self.h1, self.resized[1]
        l0, l1 = int(h1.i0[c0]), int(h1.i1[c1 - 1]) + 1  # low-res rows needed
        if not self.sliceable:
            x = self.low[:, l0:l1]
            x = _resample(x, 2, self.w1.i0[:w], self.w1.i1[:w], self.w1.w0[:w], self.w1.w1[:w])
            return _resample(x, 1, h1.i0[c0:c1] - l0, h1.i1[c0:c1] - l0, h1.w0[c0:c1],
                             h1.w1[c0:c1])
        # PyTorch picks another CPU kernel when out_h + out_w <= 128: stay on the full call's side
        hp, wp = self.padded
        if hp + wp > _SMALL_OUTPUT:
            while 4 * (l1 - l0) + wp <= _SMALL_OUTPUT:
                l0, l1 = (l0, l1 + 1) if l1 < self.low.shape[1] else (l0 - 1, l1)
        x = F.interpolate(self.low[None, :, l0:l1], size=(4 * (l1 - l0), wp), mode="bilinear",
                          align_corners=False)[0]
        return x[:, c0 - 4 * l0:c1 - 4 * l0, :w]

    def rows(self, r0: int, r1: int) -> torch.Tensor:
        """Mask logits of output rows [r0, r1): [Q, r1 - r0, W]."""
        if not 0 <= r0 < r1 <= self.output[0]:
            raise ValueError(f"row band [{r0}, {r1}) outside [0, {self.output[0]})")
        h2, w2 = self.h2, self.w2
        c0, c1 = int(h2.i0[r0]), int(h2.i1[r1 - 1]) + 1  # crop (= padded) rows needed
        x = self._padded_rows(c0, c1)
        if not w2.identity:
            x = _resample(x, 2, w2.i0, w2.i1, w2.w0, w2.w1)
        if h2.identity:
            return x[:, r0 - c0:r1 - c0]
        return _resample(x, 1, h2.i0[r0:r1] - c0, h2.i1[r0:r1] - c0, h2.w0[r0:r1], h2.w1[r0:r1])


# --------------------------------------------------------------------------- mask sources

class _FullResMasks:
    """Full-resolution mask logits already in memory."""

    owns_chunks = True  # chunks from queries() are fresh tensors the caller may overwrite

    def __init__(self, logits: torch.Tensor, chunk_bytes: int) -> None:
        self.logits = logits
        self.num_queries, self.height, self.width = logits.shape
        self.chunk_bytes = chunk_bytes

    def query_chunk_size(self) -> int:
        return max(_MIN_CHUNK_QUERIES, self.chunk_bytes // (4 * self.height * self.width))

    def queries(self, idx: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (position in idx, [m, H, W] logits) for consecutive chunks of ``idx``."""
        step = self.query_chunk_size()
        for s in range(0, idx.numel(), step):
            yield s, self.logits.index_select(0, idx[s:s + step].to(self.logits.device))

    def rows(self, r0: int, r1: int) -> torch.Tensor:
        return self.logits[:, r0:r1]


class _LowResMasks(_FullResMasks):
    """Decoder-resolution mask logits, resized to the output on demand."""

    def __init__(self, low: torch.Tensor, padded: HW, resized: HW, output: HW,
                 chunk_bytes: int) -> None:
        self.low, self.padded, self.resized, self.output = low, padded, resized, output
        self.num_queries = low.shape[0]
        self.height, self.width = output
        self.chunk_bytes = chunk_bytes
        self.bands = BandResizer(low, padded, resized, output)

    def query_chunk_size(self) -> int:
        per_query = 4 * max(self.padded[0] * self.padded[1], self.height * self.width)
        return max(_MIN_CHUNK_QUERIES, self.chunk_bytes // per_query)

    def queries(self, idx: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        step = self.query_chunk_size()
        for s in range(0, idx.numel(), step):
            chunk = self.low.index_select(0, idx[s:s + step].to(self.low.device))
            yield s, mask_logits_to_image(chunk, self.padded, self.resized, self.output)

    def rows(self, r0: int, r1: int) -> torch.Tensor:
        return self.bands.rows(r0, r1)


def _row_bands(height: int, rows_per_band: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, height, rows_per_band):
        yield r0, min(height, r0 + rows_per_band)


# --------------------------------------------------------------------------- semantic

def semantic_inference(mask_cls_logprobs: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Official semantic scores [K, H, W]: sum_q softmax(cls)[q, k] * sigmoid(mask[q])."""
    mask_logits = _squeeze_masks(mask_logits, "mask_logits")
    _check_classes(mask_cls_logprobs, mask_logits.shape[0],
                   [False] * (mask_cls_logprobs.shape[-1] - 1), None)
    cls = F.softmax(mask_cls_logprobs, dim=-1)[..., :-1]
    return torch.einsum("qc,qhw->chw", cls, mask_logits.sigmoid())


def _semantic(mask_cls_logprobs: torch.Tensor, source: _FullResMasks,
              keep_probs: bool) -> SemanticResult:
    """Argmax class and its score per pixel, one band of rows at a time."""
    cls = F.softmax(mask_cls_logprobs, dim=-1)[..., :-1]
    q, k = cls.shape
    h, w = source.height, source.width
    labels = np.empty((h, w), dtype=np.int32)
    scores = np.empty((h, w), dtype=np.float32)
    probs = np.empty((k, h, w), dtype=np.float32) if keep_probs else None
    rows_per_band = max(_MIN_BAND_ROWS, source.chunk_bytes // (4 * w * max(q, k)))
    for r0, r1 in _row_bands(h, rows_per_band):
        sem = torch.einsum("qc,qhw->chw", cls, source.rows(r0, r1).sigmoid())
        top, best = sem.max(0)  # first maximum on ties, like argmax
        labels[r0:r1] = best.to(torch.int32).cpu().numpy()
        scores[r0:r1] = top.float().cpu().numpy()
        if probs is not None:
            probs[:, r0:r1] = sem.float().cpu().numpy()
    return SemanticResult(labels=labels, scores=scores, probs=probs)


# --------------------------------------------------------------------------- query passes

class _QueryVisitor:
    """Consumes full-resolution masks of a sorted subset of queries, chunk by chunk."""

    queries: torch.Tensor  # sorted query indices this visitor needs (CPU int64)
    needs_binary = False  # whether visit() reads ``binary``

    def visit(self, rows: torch.Tensor, pos: torch.Tensor, binary: torch.Tensor | None,
              sig: torch.Tensor) -> None:
        """Chunk rows ``rows`` (ascending) are this visitor's queries at positions ``pos``.

        ``sig`` [m, H, W] is the sigmoid of the chunk's mask logits and ``binary`` their
        sign (logit > 0), both for all m rows of the chunk: visitors read their rows in
        place instead of copying them out.
        """
        raise NotImplementedError


def _query_pass(source: _FullResMasks, visitors: list[_QueryVisitor]) -> None:
    """Upsample every query any visitor needs exactly once, in ascending query order."""
    visitors = [v for v in visitors if v.queries.numel() > 0]
    if not visitors:
        return
    wanted = torch.unique(torch.cat([v.queries for v in visitors]))  # sorted
    lookups = []
    for v in visitors:
        lut = torch.full((source.num_queries,), -1, dtype=torch.int64)
        lut[v.queries] = torch.arange(v.queries.numel())
        lookups.append(lut)
    for s, logits in source.queries(wanted):
        chunk = wanted[s:s + logits.shape[0]]
        members = []
        for v, lut in zip(visitors, lookups):
            pos = lut[chunk]
            rows = (pos >= 0).nonzero().flatten()
            if rows.numel():
                members.append((v, rows, pos[rows]))
        binary = logits > 0 if any(v.needs_binary for v, _, _ in members) else None
        sig = logits.sigmoid_() if source.owns_chunks else logits.sigmoid()
        del logits
        for v, rows, pos in members:
            v.visit(rows, pos, binary, sig)


def _count_true(mask: torch.Tensor) -> torch.Tensor:
    """Per-row count of a [m, H, W] bool tensor (an int32 byte sum is several times faster)."""
    return mask.view(torch.uint8).flatten(1).sum(1, dtype=torch.int32)


# --------------------------------------------------------------------------- panoptic

class _PanopticPixels(_QueryVisitor):
    """Pixel ownership of the official panoptic loop, accumulated over chunks of queries.

    A pixel belongs to the first kept query (in query order) with the highest
    score * sigmoid, as ``argmax`` over all kept queries would say: within a chunk ``max``
    returns the first maximum, across chunks a strict '>' keeps the earlier query.
    """

    def __init__(self, kept: torch.Tensor, kept_scores: torch.Tensor) -> None:
        self.queries = kept
        self.scores = kept_scores
        self.best: torch.Tensor | None = None
        self.owner: torch.Tensor | None = None  # int32 position in kept
        self.owner_fg: torch.Tensor | None = None  # owner's sigmoid >= 0.5 there
        self.own_area = torch.zeros(kept.numel(), dtype=torch.int64)

    def visit(self, rows: torch.Tensor, pos: torch.Tensor, binary: torch.Tensor | None,
              sig: torch.Tensor) -> None:
        dev, m = sig.device, sig.shape[0]
        # prob = score * sig on our rows (bitwise: 0 + x == x), -2 (never the max) elsewhere
        scale = torch.zeros(m, 1, 1, dtype=sig.dtype)
        bias = torch.full((m, 1, 1), -2.0, dtype=sig.dtype)
        scale[rows, 0, 0] = self.scores[pos]
        bias[rows] = 0.0
        prob = torch.addcmul(bias.to(dev), sig, scale.to(dev))
        top, arg = prob.max(0)
        del prob
        fg = sig.gather(0, arg[None])[0] >= 0.5
        chunk_pos = torch.full((m,), -1, dtype=torch.int32)
        chunk_pos[rows] = pos.to(torch.int32)
        owner = torch.take(chunk_pos.to(dev), arg)
        self.own_area[pos] = _count_true(sig >= 0.5).cpu()[rows].to(torch.int64)
        if self.best is None:
            self.best, self.owner, self.owner_fg = top, owner, fg
            return
        better = top > self.best
        self.best = torch.where(better, top, self.best)
        self.owner = torch.where(better, owner, self.owner)
        self.owner_fg = torch.where(better, fg, self.owner_fg)


def _panoptic_decisions(own_area: list[int], argmax_area: list[int], visible_area: list[int],
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


class _Panoptic:
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
        self.pixels = _PanopticPixels(self.kept, self.scores)

    def result(self, height: int, width: int) -> PanopticResult:
        px = self.pixels
        if px.owner is None:
            return PanopticResult(segment_ids=np.zeros((height, width), dtype=np.int32))
        n = self.kept.numel()
        owner = px.owner.flatten()
        argmax_area = torch.bincount(owner, minlength=n).cpu().tolist()
        visible_area = torch.bincount(owner[px.owner_fg.flatten()], minlength=n).cpu().tolist()
        painted, creator = _panoptic_decisions(px.own_area.tolist(), argmax_area, visible_area,
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


def panoptic_inference(mask_cls_logprobs: torch.Tensor, mask_logits: torch.Tensor,
                       thing_mask: Sequence[bool] | torch.Tensor, labels: Sequence[str],
                       object_mask_threshold: float = 0.0, overlap_threshold: float = 0.8,
                       chunk_bytes: int = PostprocessConfig.chunk_bytes) -> PanopticResult:
    """Official panoptic decisions from full-resolution mask logits [Q, H, W]."""
    mask_logits = _squeeze_masks(mask_logits, "mask_logits")
    things = _check_classes(mask_cls_logprobs, mask_logits.shape[0], thing_mask, labels)
    with torch.no_grad():
        source = _FullResMasks(mask_logits, chunk_bytes)
        pan = _Panoptic(mask_cls_logprobs, things, labels, object_mask_threshold,
                        overlap_threshold)
        _query_pass(source, [pan.pixels])
        return pan.result(source.height, source.width)


# --------------------------------------------------------------------------- instance

class _Instances(_QueryVisitor):
    """Official instance inference: top-k (query, class) pairs of thing classes.

    Each distinct query's mask (logit > 0) and mean sigmoid inside it are computed once and
    shared by all its (query, class) pairs. Results are sorted by final score.
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
        self.queries, which = torch.unique(self.query, return_inverse=True)
        self.which = which
        self.users: list[list[int]] = [[] for _ in range(self.queries.numel())]
        for i, u in enumerate(which.tolist()):
            self.users[u].append(i)
        n, d = self.query.numel(), self.queries.numel()
        self.masks = np.zeros((n, height, width), dtype=bool)
        self.mask_score = torch.zeros(d, dtype=torch.float32)
        self.rows_any = np.zeros((d, height), dtype=bool)
        self.cols_any = np.zeros((d, width), dtype=bool)

    def visit(self, rows: torch.Tensor, pos: torch.Tensor, binary: torch.Tensor | None,
              sig: torch.Tensor) -> None:
        assert binary is not None
        # official: (sig * binary.float()).sum / (binary.float().sum + 1e-6), row by row, in
        # float32 (the float mask promotes half-precision logits)
        mask = binary if sig.dtype == torch.float32 else binary.to(torch.float32)
        total = (sig * mask).flatten(1).sum(1)
        count = _count_true(binary).to(total.dtype)
        r = rows.to(sig.device)
        self.mask_score[pos] = (total / (count + 1e-6))[r].cpu()
        p = pos.numpy()
        self.rows_any[p] = binary.any(2)[r].cpu().numpy()
        self.cols_any[p] = binary.any(1)[r].cpu().numpy()
        for j, u in zip(rows.tolist(), p.tolist()):
            mask = binary[j].cpu().numpy()
            for i in self.users[u]:
                self.masks[i] = mask

    def result(self) -> InstanceResult:
        scores = self.class_score * self.mask_score[self.which]
        order = torch.sort(scores, descending=True, stable=True).indices.numpy()
        _permute_rows_inplace(self.masks, order)
        boxes = boxes_from_projections(self.rows_any, self.cols_any)[self.which.numpy()]
        return InstanceResult(
            masks=self.masks, scores=scores.float().numpy()[order],
            classes=self.label.numpy().astype(np.int64)[order],
            query_indices=self.query.numpy().astype(np.int64)[order], boxes=boxes[order],
            class_scores=self.class_score.float().numpy()[order])


def _permute_rows_inplace(rows: np.ndarray, order: np.ndarray) -> None:
    """rows[:] = rows[order] without a second copy of ``rows`` (follows permutation cycles)."""
    done = np.zeros(len(order), dtype=bool)
    for start in range(len(order)):
        if done[start] or order[start] == start:
            done[start] = True
            continue
        saved = rows[start].copy()
        i = start
        while True:
            done[i] = True
            src = int(order[i])
            if src == start:
                rows[i] = saved
                break
            rows[i] = rows[src]
            i = src


def instance_inference(mask_cls_logprobs: torch.Tensor, mask_logits: torch.Tensor,
                       thing_mask: Sequence[bool] | torch.Tensor, topk: int = 100,
                       chunk_bytes: int = PostprocessConfig.chunk_bytes) -> InstanceResult:
    """Official instance results from full-resolution mask logits [Q, H, W], best score first."""
    mask_logits = _squeeze_masks(mask_logits, "mask_logits")
    things = _check_classes(mask_cls_logprobs, mask_logits.shape[0], thing_mask, None)
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    with torch.no_grad():
        source = _FullResMasks(mask_logits, chunk_bytes)
        inst = _Instances(mask_cls_logprobs, things, topk, source.height, source.width)
        _query_pass(source, [inst])
        return inst.result()


# --------------------------------------------------------------------------- combined

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
    low = _squeeze_masks(mask_logits_low_res, "mask_logits_low_res")
    things = _check_classes(mask_cls_logprobs, low.shape[0], thing_mask, labels)
    padded, resized, output = _check_geometry(padded_hw, resized_hw, output_hw)
    with torch.no_grad():
        source: _FullResMasks = _LowResMasks(low, padded, resized, output, cfg.chunk_bytes)
        full_bytes = 4 * low.shape[0] * max(padded[0] * padded[1], output[0] * output[1])
        if full_bytes <= cfg.chunk_bytes:  # small enough: resize everything once, exactly
            source = _FullResMasks(mask_logits_to_image(low, padded, resized, output),
                                   cfg.chunk_bytes)
        semantic = (_semantic(mask_cls_logprobs, source, cfg.keep_semantic_probs)
                    if cfg.semantic_on else None)
        pan = (_Panoptic(mask_cls_logprobs, things, labels, cfg.object_mask_threshold,
                         cfg.overlap_threshold) if cfg.panoptic_on else None)
        inst = (_Instances(mask_cls_logprobs, things, cfg.topk_per_image, *output)
                if cfg.instance_on else None)
        _query_pass(source, [v for v in (pan and pan.pixels, inst) if v is not None])
        panoptic = pan.result(*output) if pan else None
        instances = inst.result() if inst else None
    return semantic, panoptic, instances


# --------------------------------------------------------------------------- reference ports

def reference_panoptic_inference(mask_cls_logprobs: torch.Tensor, mask_logits: torch.Tensor,
                                 thing_mask: Sequence[bool] | torch.Tensor,
                                 object_mask_threshold: float = 0.0,
                                 overlap_threshold: float = 0.8,
                                 ) -> tuple[torch.Tensor, list[dict]]:
    """The official panoptic inference on full tensors: (id map [H, W] int32, segments_info).

    Every pixel measure is taken the official way (sigmoid of all queries, one argmax over
    all kept queries, per-query boolean masks); slow and memory-hungry on purpose, it is the
    oracle for the chunked path and the benchmark baseline. The decisions on those measures
    are ``_panoptic_decisions``, checked against the official fixtures.
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
    painted, creator = _panoptic_decisions(
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
