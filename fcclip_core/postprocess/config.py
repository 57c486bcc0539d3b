"""What post-processing produces and the official thresholds it applies."""
from __future__ import annotations

from dataclasses import dataclass


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
