"""CLEAR-MOT and identity metrics of a tracker against ground truth: MOTA, identity switches,
IDF1. Used by the tests on synthetic sequences, where every segment's true object is known.

Input, per frame: the ground-truth object ids present, and the (object id, track id) pairs the
tracker reported for them (a track id 0 or a missing object means "not tracked"). A track id
with no object (a false positive) is given as (None, track id).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

Pairs = Sequence[tuple[int | None, int]]


@dataclass(frozen=True)
class TrackMetrics:
    frames: int
    objects: int  # ground-truth detections, summed over frames
    misses: int  # objects without a track id
    false_positives: int  # track ids without an object
    id_switches: int  # an object's track id differs from the one it last had
    mota: float  # 1 - (misses + false positives + switches) / objects
    idf1: float  # 2 IDTP / (ground-truth detections + tracker detections), best 1-1 id mapping


def track_metrics(frames: Iterable[tuple[Sequence[int], Pairs]]) -> TrackMetrics:
    """Metrics over frames of (ground-truth ids present, (object id, track id) pairs)."""
    last: dict[int, int] = {}
    objects = misses = false_pos = switches = num_frames = hyp_total = 0
    co: dict[tuple[int, int], int] = {}
    for present, pairs in frames:
        num_frames += 1
        objects += len(present)
        tracked = {}
        for obj, track in pairs:
            if track == 0:
                continue
            hyp_total += 1
            if obj is None or obj not in present:
                false_pos += 1
                continue
            if obj in tracked:
                raise ValueError(f"object {obj} has two track ids in one frame")
            tracked[obj] = track
        for obj in present:
            track = tracked.get(obj)
            if track is None:
                misses += 1
                continue
            if obj in last and last[obj] != track:
                switches += 1
            last[obj] = track
            co[(obj, track)] = co.get((obj, track), 0) + 1
    idtp = _best_identity_matches(co)
    mota = 1.0 - (misses + false_pos + switches) / objects if objects else 1.0
    idf1 = 2 * idtp / (objects + hyp_total) if objects + hyp_total else 1.0
    return TrackMetrics(num_frames, objects, misses, false_pos, switches, mota, idf1)


def _best_identity_matches(co: dict[tuple[int, int], int]) -> int:
    """Frames shared under the one-to-one object <-> track mapping that maximises them."""
    if not co:
        return 0
    objs = sorted({o for o, _ in co})
    tracks = sorted({t for _, t in co})
    gain = np.zeros((len(objs), len(tracks)))
    oi, ti = {o: i for i, o in enumerate(objs)}, {t: i for i, t in enumerate(tracks)}
    for (o, t), n in co.items():
        gain[oi[o], ti[t]] = n
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return int(gain[rows, cols].sum())
