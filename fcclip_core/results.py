"""Segmentation results as plain numpy-facing dataclasses.

These are what the ``Predictor`` hands to callers and what the ROS node publishes: no torch
tensors, explicit dtypes and units, so consumers never need to know how they were computed.

Conventions (all results):
- pixel coordinates are (x, y) = (column, row) of the output image, origin top-left, pixel
  centres at integer coordinates;
- class ids are contiguous indices into the vocabulary the model was run with;
- boxes are (x, y, width, height) in pixels, the tight box around the pixels (a one-pixel
  mask at column 3, row 5 has box (3, 5, 1, 1)); an empty mask has box (0, 0, 0, 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Segment:
    """One panoptic segment (a thing instance, or all pixels of one stuff class)."""

    id: int  # value of this segment's pixels in PanopticResult.segment_ids (1, 2, ...)
    category_id: int  # contiguous class index into the vocabulary
    label: str  # class name (first synonym)
    isthing: bool
    score: float  # class probability of the query that created the segment, in [0, 1]
    area: int  # pixels with this id in the final map
    bbox: tuple[int, int, int, int]  # x, y, width, height in pixels
    centroid: tuple[float, float]  # x, y in pixels: mean column and mean row of the segment
    query_index: int  # decoder query that created the segment (the first one for merged stuff)


@dataclass
class PanopticResult:
    """Panoptic segmentation: every pixel belongs to at most one segment."""

    segment_ids: np.ndarray  # [H, W] int32, 0 = no segment, else Segment.id
    segments: list[Segment] = field(default_factory=list)  # in id order (ids 1..N)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.segment_ids.shape)  # type: ignore[return-value]

    def segment(self, segment_id: int) -> Segment:
        """The segment with this id (KeyError when absent)."""
        for seg in self.segments:
            if seg.id == segment_id:
                return seg
        raise KeyError(f"no segment with id {segment_id}")


@dataclass
class InstanceResult:
    """Instance segmentation of the thing classes: masks may overlap, one class per mask."""

    masks: np.ndarray  # [N, H, W] bool
    scores: np.ndarray  # [N] float32: class probability x mean mask probability inside the mask
    classes: np.ndarray  # [N] int64: contiguous class index
    query_indices: np.ndarray  # [N] int64: decoder query behind each instance
    boxes: np.ndarray  # [N, 4] int32: x, y, width, height in pixels
    class_scores: np.ndarray | None = None  # [N] float32: the class probability alone

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass
class SemanticResult:
    """Semantic segmentation: the best class of every pixel."""

    labels: np.ndarray  # [H, W] int32: argmax class index
    scores: np.ndarray  # [H, W] float32: semantic score of that class (sum over queries of
    #                     class probability x mask probability; not normalised to 1)
    probs: np.ndarray | None = None  # [K, H, W] float32 full semantic scores, only when asked


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight (x, y, width, height) boxes of [N, H, W] boolean masks; (0, 0, 0, 0) when empty."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    n = masks.shape[0]
    boxes = np.zeros((n, 4), dtype=np.int32)
    if n == 0:
        return boxes
    return boxes_from_projections(masks.any(axis=2), masks.any(axis=1))


def boxes_from_projections(rows_any: np.ndarray, cols_any: np.ndarray) -> np.ndarray:
    """Boxes from per-object row and column occupancy ([N, H] and [N, W] bool)."""
    n, h = rows_any.shape
    w = cols_any.shape[1]
    boxes = np.zeros((n, 4), dtype=np.int32)
    present = rows_any.any(axis=1)
    if not present.any():
        return boxes
    y0 = rows_any.argmax(axis=1)
    y1 = h - 1 - rows_any[:, ::-1].argmax(axis=1)
    x0 = cols_any.argmax(axis=1)
    x1 = w - 1 - cols_any[:, ::-1].argmax(axis=1)
    boxes[:, 0] = x0
    boxes[:, 1] = y0
    boxes[:, 2] = x1 - x0 + 1
    boxes[:, 3] = y1 - y0 + 1
    boxes[~present] = 0
    return boxes


@dataclass(frozen=True)
class RegionStats:
    """Area, box and centroid of every id of a label map (index = id)."""

    area: np.ndarray  # [M] int64
    bbox: np.ndarray  # [M, 4] int32 (x, y, w, h)
    centroid: np.ndarray  # [M, 2] float64 (x, y); NaN where the area is 0


def region_stats(id_map: np.ndarray, num_ids: int) -> RegionStats:
    """Stats of ids 0..num_ids-1 of an integer map from two bincounts over the pixels.

    Per-id row and column histograms give the areas, the centroids (histogram-weighted mean
    coordinates) and the boxes (first and last occupied row / column), so the cost does not
    grow with the number of segments.
    """
    id_map = np.asarray(id_map)
    if id_map.ndim != 2 or not np.issubdtype(id_map.dtype, np.integer):
        raise ValueError(f"id map must be an integer [H, W] array, got {id_map.dtype} {id_map.shape}")
    if id_map.size and (id_map.min() < 0 or id_map.max() >= num_ids):
        raise ValueError(f"id map values must lie in [0, {num_ids})")
    h, w = id_map.shape
    ids = id_map.astype(np.int64)
    col_hist = np.bincount((ids * w + np.arange(w)).ravel(), minlength=num_ids * w)
    col_hist = col_hist.reshape(num_ids, w)
    row_hist = np.bincount((ids.T * h + np.arange(h)).ravel(), minlength=num_ids * h)
    row_hist = row_hist.reshape(num_ids, h)
    area = col_hist.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = np.stack([col_hist @ np.arange(w, dtype=np.float64) / area,
                             row_hist @ np.arange(h, dtype=np.float64) / area], axis=1)
    return RegionStats(area=area, bbox=boxes_from_projections(row_hist > 0, col_hist > 0),
                       centroid=centroid)
