"""Track ids on synthetic panoptic sequences: moving, crossing, hiding and returning objects,
stuff, resets, the 3D gate, and identity metrics over a longer sequence."""
from __future__ import annotations

import numpy as np
import pytest

from fcclip_core.spatial.synthetic import MovingBox, panoptic_result, render_boxes
from fcclip_core.spatial.track_metrics import track_metrics
from fcclip_core.spatial.tracker import FrameTracks, SegmentTracker, TrackerConfig, visible_iou

H, W = 240, 320
LABELS = ["person", "chair", "cup", "wall"]
WALL = 3


def run(boxes, frames, tracker=None, version=lambda f: 0, stamp=lambda f: float(f),
        positions=None):
    """Per frame: (object id -> track id, FrameTracks, the panoptic result)."""
    tracker = tracker or SegmentTracker()
    out = []
    for f in range(frames):
        ids, segments, objects = render_boxes(tuple(boxes), f, H, W, stuff_class=WALL)
        panoptic = panoptic_result(ids, segments, LABELS)
        pos = positions(f, objects) if positions else None
        tracks = tracker.update(panoptic, stamp=stamp(f), vocabulary_version=version(f),
                                positions_3d=pos)
        out.append(({objects[s]: t for s, t in tracks.track_of_segment.items() if s in objects},
                    tracks, panoptic))
    return out


def ids_of(result, obj):
    return [frame[0].get(obj) for frame in result]


def test_moving_objects_keep_their_ids_after_confirmation() -> None:
    boxes = [MovingBox(1, 0, 40, 60, 5, 0, 30, 40), MovingBox(2, 0, 280, 170, -5, 1, 30, 40),
             MovingBox(3, 1, 160, 120, 0, 3, 40, 30)]
    result = run(boxes, 25)
    assert all(result[0][0][o] == 0 for o in (1, 2, 3))  # min_hits = 2: not published yet
    for obj in (1, 2, 3):
        ids = ids_of(result, obj)[1:]
        assert len(set(ids)) == 1 and ids[0] > 0, (obj, ids)
    assert len({ids_of(result, o)[5] for o in (1, 2, 3)}) == 3


def test_crossing_objects_of_one_class_keep_their_ids() -> None:
    # same class, same row, crossing at frame 15; the nearer one hides the other meanwhile
    boxes = [MovingBox(1, 0, 40, 120, 8, 0, 40, 50, z=1.0),
             MovingBox(2, 0, 280, 120, -8, 0, 40, 50, z=2.0)]
    result = run(boxes, 30)
    hidden = [f for f in range(30) if 2 not in result[f][0]]
    assert hidden, "the far box should be fully hidden for a few frames"
    for obj in (1, 2):
        ids = [i for i in ids_of(result, obj)[1:] if i is not None]
        assert len(set(ids)) == 1, (obj, ids)
    assert ids_of(result, 1)[-1] != ids_of(result, 2)[-1]


def test_an_object_hidden_for_a_few_frames_comes_back_with_its_id() -> None:
    box = MovingBox(1, 2, 60, 120, 4, 0, 36, 36, hidden=frozenset(range(8, 12)))
    result = run([box], 20, SegmentTracker(TrackerConfig(max_missed=5)))
    ids = ids_of(result, 1)
    assert ids[8:12] == [None] * 4
    assert set(ids[1:8]) == set(ids[12:]) and ids[12] > 0


def test_an_object_hidden_longer_than_max_missed_gets_a_new_id() -> None:
    box = MovingBox(1, 2, 60, 120, 0, 0, 36, 36, hidden=frozenset(range(5, 12)))
    result = run([box], 16, SegmentTracker(TrackerConfig(max_missed=5)))
    ids = ids_of(result, 1)
    assert ids[12] == 0  # a new track, not yet confirmed
    assert ids[13] > 0 and ids[13] != ids[4]


def test_stuff_keeps_one_id_per_class() -> None:
    result = run([MovingBox(1, 0, 100, 100, 3, 0, 30, 30)], 6)
    wall_ids = set()
    for _, tracks, panoptic in result:
        wall = [s.id for s in panoptic.segments if not s.isthing]
        wall_ids.add(tracks.track_of_segment[wall[0]])
    assert len(wall_ids) == 1 and wall_ids != {0}


def test_vocabulary_change_and_time_going_backwards_reset_the_tracks() -> None:
    box = MovingBox(1, 0, 60, 120, 2, 0, 36, 36)
    result = run([box], 12, version=lambda f: 0 if f < 6 else 1,
                 stamp=lambda f: float(f) if f < 9 else float(f - 9))
    ids = ids_of(result, 1)
    assert result[6][1].reset_reason and "vocabulary" in result[6][1].reset_reason
    assert ids[6] == 0 and ids[7] > 0 and ids[7] != ids[5]
    assert result[9][1].reset_reason and "backwards" in result[9][1].reset_reason
    assert ids[9] == 0 and ids[10] not in (0, ids[7])
    assert all(r[1].reset_reason is None for i, r in enumerate(result) if i not in (6, 9))


def test_min_hits_one_publishes_at_once() -> None:
    result = run([MovingBox(1, 0, 60, 120, 2, 0, 36, 36)], 3,
                 SegmentTracker(TrackerConfig(min_hits=1)))
    assert ids_of(result, 1)[0] > 0 and len(set(ids_of(result, 1))) == 1


def test_3d_distance_keeps_apart_what_overlaps_in_the_image() -> None:
    box = MovingBox(1, 0, 60, 120, 0, 0, 36, 36)

    def jumping(f, objects):  # same pixels, but 3 m farther from frame 3 on
        return {s: (0.0, 0.0, 1.0 if f < 3 else 4.0) for s in objects}

    ids = ids_of(run([box], 6, positions=jumping), 1)
    assert ids[2] > 0 and ids[3] == 0 and ids[4] not in (0, ids[2])
    steady = ids_of(run([box], 6, positions=lambda f, o: {s: (0, 0, 1.0 + 0.05 * f) for s in o}), 1)
    assert len(set(steady[1:])) == 1


def test_visible_iou_counts_what_other_segments_cover_as_hidden() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 4, 300)  # 4 segments and background on 300 grid pixels
    predicted = rng.random((3, 300)) < 0.3
    got = visible_iou(labels, 4, predicted)
    for i in range(4):
        seg = labels == i
        for j in range(3):
            hidden = predicted[j] & (labels >= 0) & ~seg  # under another segment
            visible = predicted[j] & ~hidden
            union = (seg | visible).sum()
            assert got[i, j] == pytest.approx((seg & visible).sum() / union)


def test_the_track_id_image_paints_each_segment_with_its_track() -> None:
    ids = np.array([[0, 1, 1], [2, 2, 3]], dtype=np.int32)
    image = FrameTracks({1: 7, 2: 0, 3: 12}).id_image(ids)
    assert image.dtype == np.uint32
    assert image.tolist() == [[0, 7, 7], [0, 0, 12]]


def _longer_sequence() -> list[MovingBox]:
    rng = np.random.default_rng(3)
    boxes = []
    for obj in range(1, 9):
        hidden = frozenset()
        if obj % 3 == 0:
            start = int(rng.integers(10, 60))
            hidden = frozenset(range(start, start + int(rng.integers(1, 4))))
        boxes.append(MovingBox(obj, obj % 2, float(rng.uniform(40, 280)), float(rng.uniform(40, 200)),
                               float(rng.uniform(-2.5, 2.5)), float(rng.uniform(-1.5, 1.5)),
                               int(rng.integers(24, 44)), int(rng.integers(24, 44)),
                               z=float(obj), hidden=hidden))
    return boxes


def test_identity_metrics_on_a_longer_sequence() -> None:
    boxes = _longer_sequence()
    result = run(boxes, 80)
    frames = []
    for f, (by_object, _, _) in enumerate(result):
        frames.append((sorted(by_object), [(o, t) for o, t in by_object.items()]))
    metrics = track_metrics(frames)
    assert metrics.frames == 80 and metrics.objects > 400
    assert metrics.id_switches == 0
    assert metrics.false_positives == 0
    # misses: only each track's first frame (not yet confirmed)
    assert metrics.misses <= 8 + 3
    assert metrics.mota > 0.97 and metrics.idf1 > 0.97


def test_track_metrics_on_a_hand_counted_example() -> None:
    frames = [
        ([1, 2], [(1, 10), (2, 20)]),
        ([1, 2], [(1, 10), (2, 0)]),  # object 2 missed
        ([1, 2], [(1, 20), (2, 10)]),  # both switch
        ([1], [(1, 20), (None, 30)]),  # a false positive
    ]
    m = track_metrics(frames)
    assert (m.objects, m.misses, m.false_positives, m.id_switches) == (7, 1, 1, 2)
    assert m.mota == pytest.approx(1 - 4 / 7)
    # best mapping: 1 -> 10 (2 frames), 2 -> 20 (1 frame) or 1 -> 20 (2), 2 -> 10 (1): IDTP 3
    assert m.idf1 == pytest.approx(2 * 3 / (7 + 7))
    with pytest.raises(ValueError, match="two track ids"):
        track_metrics([([1], [(1, 5), (1, 6)])])


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 1), (1, 1)])
def test_extreme_image_shapes_are_tracked(shape) -> None:
    ids = np.ones(shape, dtype=np.int32)
    panoptic = panoptic_result(ids, [(1, 0, True)], LABELS)
    tracker = SegmentTracker(TrackerConfig(min_hits=1))
    first = tracker.update(panoptic, stamp=0.0).track_of_segment
    assert tracker.update(panoptic, stamp=1.0).track_of_segment == first and first[1] > 0


def test_bad_tracker_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="min_iou"):
        TrackerConfig(min_iou=0)
    with pytest.raises(ValueError, match="min_hits"):
        TrackerConfig(min_hits=0)
