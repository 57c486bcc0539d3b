"""Track ids that persist across frames for panoptic segments.

Each frame's thing segments are matched to the live tracks of the same class by an optimal
assignment (``scipy.optimize.linear_sum_assignment``) on mask IoU (``visible_iou``: what other
segments cover of a track counts as hidden), computed on one shared low resolution grid, with each track's mask moved by its recent pixel velocity (so objects that
move or are hidden for a few frames are found where they should be; while a match is much
smaller than its track or other segments cover its prediction, the object is taken as partly
hidden and the track keeps its whole predicted mask and velocity). When both sides have a 3D
centroid, pairs farther apart than ``max_distance`` never match and the distance adds to the
cost. A new track is published once it was seen in ``min_hits`` frames (until then its
segments carry track id 0); a track not seen for more than ``max_missed`` frames ends. Stuff
classes (wall, floor, sky) keep one id per class. Everything resets on a vocabulary change (the
class ids change meaning) and when time goes backwards (a bag replayed from the start); ids
are never reused within one tracker.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from fcclip_core.results import PanopticResult
from fcclip_core.spatial.depth import sample_nearest

_NO_MATCH = 1e6  # cost of a forbidden pair


@dataclass(frozen=True)
class TrackerConfig:
    """Association parameters (the node's ``tracker_*`` parameters)."""

    min_iou: float = 0.2  # a segment and a track's predicted mask must overlap at least this
    max_missed: int = 5  # frames an unmatched track survives
    min_hits: int = 2  # frames a new track needs before it gets a published id (1: at once)
    match_side: int = 160  # masks are compared on a grid with this longer side (pixels)
    max_distance: float = 1.0  # metres between 3D centroids beyond which a pair never matches
    distance_weight: float = 0.5  # cost added per max_distance of 3D distance

    occluded_ratio: float = 0.9  # a match below this x the track's area (or a prediction
    #                               covered by more than 1 - this) is partly hidden

    def __post_init__(self) -> None:
        if not 0.0 < self.occluded_ratio <= 1.0:
            raise ValueError(f"occluded_ratio must lie in (0, 1], got {self.occluded_ratio}")
        if not 0.0 < self.min_iou <= 1.0:
            raise ValueError(f"min_iou must lie in (0, 1], got {self.min_iou}")
        if self.max_missed < 0 or self.min_hits < 1 or self.match_side < 8:
            raise ValueError("max_missed must be >= 0, min_hits >= 1 and match_side >= 8")
        if not self.max_distance > 0 or self.distance_weight < 0:
            raise ValueError("max_distance must be > 0 and distance_weight >= 0")


@dataclass
class _Track:
    track_id: int
    class_id: int
    mask: np.ndarray  # [h, w] bool on the match grid: last seen whole (not partly hidden)
    centre: np.ndarray  # (row, col) of the mask's centre on the match grid
    area: int  # pixels of ``mask``
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2))  # moved since ``mask``
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # grid pixels per frame
    position_3d: np.ndarray | None = None
    hits: int = 1
    missed: int = 0


@dataclass
class FrameTracks:
    """Track ids of one frame's segments."""

    track_of_segment: dict[int, int]  # segment id -> track id; 0 while not confirmed
    reset_reason: str | None = None  # why the tracks were reset before this frame, if they were

    def id_image(self, segment_ids: np.ndarray) -> np.ndarray:
        """The segment-id image with every segment's pixels set to its track id (uint32)."""
        top = int(segment_ids.max(initial=0))
        lut = np.zeros(top + 1, dtype=np.uint32)
        for sid, tid in self.track_of_segment.items():
            if sid <= top:
                lut[sid] = tid
        return lut[segment_ids]


def match_grid(height: int, width: int, side: int) -> tuple[int, int]:
    """The match grid's (height, width): the longer side ``side`` (never upsampled)."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _shifted(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``mask`` moved by whole grid pixels, what leaves the grid is dropped."""
    if rows == 0 and cols == 0:
        return mask
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(rows) >= h or abs(cols) >= w:
        return out
    src = mask[max(0, -rows):h - max(0, rows), max(0, -cols):w - max(0, cols)]
    out[max(0, rows):max(0, rows) + src.shape[0], max(0, cols):max(0, cols) + src.shape[1]] = src
    return out


def _centres(masks: np.ndarray) -> np.ndarray:
    """(row, col) mean of each [N, h, w] mask (the grid centre for an empty one)."""
    n, h, w = masks.shape
    area = masks.sum(axis=(1, 2)).astype(np.float64)
    safe = np.maximum(area, 1)
    rows = masks.sum(axis=2) @ np.arange(h) / safe
    cols = masks.sum(axis=1) @ np.arange(w) / safe
    empty = area == 0
    rows[empty], cols[empty] = (h - 1) / 2, (w - 1) / 2
    return np.stack([rows, cols], axis=1)


def visible_iou(labels: np.ndarray, num_segments: int, predicted: np.ndarray) -> np.ndarray:
    """IoU [N, M] of the segments of a label map with predicted track masks, where the part of a
    prediction covered by *other* segments of the frame counts as hidden, not missing.

    ``labels`` [P]: each grid pixel's segment index in [0, N), or -1 for none; ``predicted``
    [M, P] bool. With I = |s_i & p_j| and O_j = |p_j & (any segment)|, the visible prediction
    for segment i is |p_j| - O_j + I, so the union is |s_i| + |p_j| - O_j. Segments do not
    overlap, so all intersections come from one bincount over the predicted pixels.
    """
    m = predicted.shape[0]
    seg_area = np.bincount(labels[labels >= 0], minlength=num_segments)
    track, pixel = np.nonzero(predicted)
    label = labels[pixel]
    label = np.where(label >= 0, label, num_segments)  # column N: no segment
    inter = np.bincount(track * (num_segments + 1) + label,
                        minlength=m * (num_segments + 1)).reshape(m, num_segments + 1)[:, :num_segments]
    covered = inter.sum(axis=1)
    union = seg_area[:, None] + (predicted.sum(axis=1) - covered)[None, :]
    return np.where(union > 0, inter.T / np.maximum(union, 1), 0.0)


class SegmentTracker:
    """Gives panoptic segments ids that persist across the frames of one stream."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self._next_id = 1
        self._tracks: list[_Track] = []
        self._stuff: dict[int, int] = {}  # class id -> track id
        self._grid: tuple[int, int] | None = None
        self._version: int | None = None
        self._stamp: float | None = None

    @property
    def num_tracks(self) -> int:
        """Live thing tracks (confirmed or not)."""
        return len(self._tracks)

    def reset(self) -> None:
        """Forget every track (ids continue from where they were: never reused)."""
        self._tracks, self._stuff, self._grid = [], {}, None

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _check_reset(self, shape: tuple[int, int], stamp: float | None,
                     vocabulary_version: int) -> str | None:
        reason = None
        if self._version is not None and vocabulary_version != self._version:
            reason = f"vocabulary version {self._version} -> {vocabulary_version}"
        elif stamp is not None and self._stamp is not None and stamp < self._stamp:
            reason = f"time went backwards ({self._stamp:.3f} s -> {stamp:.3f} s)"
        grid = match_grid(*shape, self.config.match_side)
        if reason is None and self._grid is not None and grid != self._grid:
            reason = f"image size changed (match grid {self._grid} -> {grid})"
        if reason is not None:
            self.reset()
        self._grid, self._version = grid, vocabulary_version
        if stamp is not None:
            self._stamp = stamp
        return reason

    def update(self, panoptic: PanopticResult, *, stamp: float | None = None,
               vocabulary_version: int = 0,
               positions_3d: Mapping[int, Sequence[float]] | None = None) -> FrameTracks:
        """Track ids for this frame's segments.

        ``stamp`` (seconds) detects time going backwards; ``vocabulary_version`` a vocabulary
        change; ``positions_3d`` (segment id -> 3D centroid) adds the distance gate.
        """
        reason = self._check_reset(panoptic.shape, stamp, vocabulary_version)
        result: dict[int, int] = {}
        for seg in panoptic.segments:
            if not seg.isthing:
                if seg.category_id not in self._stuff:
                    self._stuff[seg.category_id] = self._new_id()
                result[seg.id] = self._stuff[seg.category_id]
        things = [s for s in panoptic.segments if s.isthing]
        assert self._grid is not None
        small = sample_nearest(panoptic.segment_ids, *self._grid)
        thing_ids = np.array([s.id for s in things], dtype=np.int64)
        index_of = np.full(int(panoptic.segment_ids.max(initial=0)) + 1, -1, dtype=np.int64)
        index_of[thing_ids] = np.arange(len(things))
        labels = index_of[small]  # [h, w]: thing index, -1 for none or stuff
        masks = labels[None] == np.arange(len(things)).reshape(-1, 1, 1)
        positions = [None if positions_3d is None or s.id not in positions_3d
                     else np.asarray(positions_3d[s.id], dtype=np.float64) for s in things]
        predicted = [_shifted(t.mask, *np.rint(t.offset + t.velocity * (t.missed + 1)).astype(int))
                     for t in self._tracks]
        matches = self._associate(things, labels, positions, predicted)
        things_union = labels >= 0
        matched_tracks = set()
        centres = _centres(masks)
        for i, seg in enumerate(things):
            j = matches.get(i)
            area = int(masks[i].sum())
            if j is None:
                track = _Track(self._new_id(), seg.category_id, masks[i], centres[i], area,
                               position_3d=positions[i])
                self._tracks.append(track)
            else:
                track = self._tracks[j]
                hidden = predicted[j] & things_union & ~masks[i]  # under other segments
                self._follow(track, masks[i], centres[i], area, predicted[j], int(hidden.sum()))
                track.position_3d = positions[i]
            matched_tracks.add(id(track))
            result[seg.id] = track.track_id if track.hits >= self.config.min_hits else 0
        survivors = []
        for track in self._tracks:
            if id(track) not in matched_tracks:
                track.missed += 1
                if track.hits < self.config.min_hits or track.missed > self.config.max_missed:
                    continue
            survivors.append(track)
        self._tracks = survivors
        return FrameTracks(track_of_segment=result, reset_reason=reason)

    def _follow(self, track: _Track, mask: np.ndarray, centre: np.ndarray, area: int,
                predicted: np.ndarray, hidden: int) -> None:
        """Update a matched track. A match much smaller than the track, or a prediction that
        other segments cover in part, is taken as partly hidden: the track keeps its whole
        mask, moved on by its velocity, and the velocity."""
        frames = track.missed + 1
        ratio = self.config.occluded_ratio
        if area < ratio * track.area or hidden > (1 - ratio) * max(1, int(predicted.sum())):
            track.offset = track.offset + track.velocity * frames
        else:
            seen = (centre - (track.centre + track.offset)) / frames
            track.velocity = seen if track.hits == 1 else 0.5 * (track.velocity + seen)
            track.mask, track.centre, track.area = mask, centre, area
            track.offset = np.zeros(2)
        track.hits += 1
        track.missed = 0

    def update_result(self, result: Any, stamp: float | None = None,
                      positions_3d: Mapping[int, Sequence[float]] | None = None) -> FrameTracks:
        """``update`` for a ``Predictor`` result (its panoptic segments and vocabulary version)."""
        if result.panoptic is None:
            raise ValueError("tracking needs the panoptic result: predict with the 'panoptic' task")
        return self.update(result.panoptic, stamp=stamp,
                           vocabulary_version=result.vocabulary_version, positions_3d=positions_3d)

    def _associate(self, things: list, labels: np.ndarray, positions: list[np.ndarray | None],
                   predicted: list[np.ndarray]) -> dict[int, int]:
        """Segment index -> track index of the optimal assignment (allowed pairs only)."""
        if not things or not self._tracks:
            return {}
        cfg = self.config
        iou = visible_iou(labels.ravel(), len(things), np.stack(predicted).reshape(len(predicted), -1))
        cost = 1.0 - iou
        same_class = (np.array([s.category_id for s in things])[:, None]
                      == np.array([t.class_id for t in self._tracks])[None, :])
        allowed = same_class & (iou >= cfg.min_iou)
        seg_xyz = np.array([np.full(3, np.nan) if p is None else p for p in positions])
        track_xyz = np.array([np.full(3, np.nan) if t.position_3d is None else t.position_3d
                              for t in self._tracks])
        distance = np.linalg.norm(seg_xyz[:, None, :] - track_xyz[None, :, :], axis=2)
        known = ~np.isnan(distance)  # both sides have a 3D centroid
        allowed &= ~known | (distance <= cfg.max_distance)
        cost += np.where(known, cfg.distance_weight * distance / cfg.max_distance, 0.0)
        cost = np.where(allowed, cost, _NO_MATCH)
        rows, cols = linear_sum_assignment(cost)
        return {int(r): int(c) for r, c in zip(rows, cols) if allowed[r, c]}
