"""Overlay and label colouring: shapes, colours, untouched background, labels drawn."""
from __future__ import annotations

import numpy as np
import pytest

from fcclip_core.results import PanopticResult, Segment, region_stats
from fcclip_core.visualize import (class_color, class_palette, colorize_labels, label_anchor,
                                   overlay, segment_colors)


def make_panoptic(ids: np.ndarray, classes: dict[int, int], things: set[int]) -> PanopticResult:
    stats = region_stats(ids, int(ids.max()) + 1)
    segments = [Segment(id=sid, category_id=c, label=f"class{c}", isthing=c in things,
                        score=0.5 + 0.01 * sid, area=int(stats.area[sid]),
                        bbox=tuple(int(v) for v in stats.bbox[sid]),
                        centroid=tuple(float(v) for v in stats.centroid[sid]), query_index=sid)
                for sid, c in classes.items()]
    return PanopticResult(segment_ids=ids.astype(np.int32), segments=segments)


def scene(height: int, width: int) -> tuple[np.ndarray, PanopticResult]:
    """Four segments: two instances of thing class 3, stuff class 1, thing class 5; a background."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ids = np.zeros((height, width), dtype=np.int32)
    h, w = height, width
    ids[: h // 2, : w // 2] = 1
    ids[: h // 2, w // 2:] = 2
    ids[h // 2:, : w // 3] = 3
    yy, xx = np.mgrid[:h, :w]
    ring = (np.hypot(yy - 3 * h // 4, xx - 2 * w // 3) < min(h, w) / 5) & \
        (np.hypot(yy - 3 * h // 4, xx - 2 * w // 3) > min(h, w) / 12)
    ids[ring] = 4  # a ring: its centroid lies outside it
    return rgb, make_panoptic(ids, {1: 3, 2: 3, 3: 1, 4: 5}, things={3, 5})


def interior(ids: np.ndarray, sid: int, margin: int = 3) -> np.ndarray:
    """Pixels of a segment at least ``margin`` pixels away from any other id."""
    mask = ids == sid
    inner = mask.copy()
    for dy in range(-margin, margin + 1):
        for dx in range(-margin, margin + 1):
            inner &= np.roll(np.roll(mask, dy, 0), dx, 1)
    return inner


@pytest.mark.parametrize("size", [(60, 90), (480, 640), (1000, 1500)])
def test_overlay_shape_dtype_and_untouched_background(size):
    rgb, pan = scene(*size)
    out = overlay(rgb, pan, alpha=0.5, draw_labels=False)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    background = pan.segment_ids == 0
    np.testing.assert_array_equal(out[background], rgb[background])
    assert not np.array_equal(out, rgb)
    assert rgb is not out


def test_overlay_blends_each_segment_in_its_own_colour():
    rgb, pan = scene(200, 300)
    alpha = 0.6
    out = overlay(rgb, pan, alpha=alpha, draw_labels=False)
    colors = segment_colors(pan)
    assert len(set(colors.values())) == len(pan.segments)  # both class-3 instances differ too
    for seg in pan.segments:
        inner = interior(pan.segment_ids, seg.id)
        expected = np.rint(rgb[inner] * (1 - alpha) + np.array(colors[seg.id]) * alpha)
        np.testing.assert_allclose(out[inner], expected, atol=1)
    # a uniform grey image shows the colours themselves: segments are told apart
    grey = np.full_like(rgb, 128)
    tinted = overlay(grey, pan, alpha=1.0, draw_labels=False)
    samples = {tuple(tinted[interior(pan.segment_ids, s.id)][0]) for s in pan.segments}
    assert len(samples) == len(pan.segments)


def test_overlay_outlines_segments():
    rgb, pan = scene(200, 300)
    out = overlay(np.full_like(rgb, 200), pan, alpha=0.0, draw_labels=False)
    ids = pan.segment_ids
    changed = (out != 200).any(axis=2)
    border = (ids[:, 1:] != ids[:, :-1])
    assert changed[:, 1:][border & (ids[:, 1:] > 0)].all()  # boundary pixels are drawn
    assert not changed[interior(ids, 1)].any()  # alpha 0: interiors keep the image
    assert not changed[ids == 0].any()


@pytest.mark.parametrize("size", [(60, 90), (480, 640), (1000, 1500)])
def test_labels_are_drawn_at_the_anchor(size):
    rgb, pan = scene(*size)
    plain = overlay(rgb, pan, draw_labels=False)
    labelled = overlay(rgb, pan, draw_labels=True)
    diff = (plain != labelled).any(axis=2)
    assert diff.any()
    for seg in pan.segments:
        x, y = label_anchor(pan.segment_ids, seg)
        assert pan.segment_ids[y, x] == seg.id  # inside, even for the ring
        r = max(4, min(size) // 40)
        assert diff[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].any()
    rows = np.nonzero(diff.any(axis=1))[0]
    assert rows.size < size[0]  # text, not a wash over the whole image


def test_text_grows_with_the_image():
    heights = []
    for size in [(120, 180), (1200, 1800)]:
        rgb, pan = scene(*size)
        single = PanopticResult(pan.segment_ids, [pan.segments[0]])
        diff = (overlay(rgb, single, draw_labels=False) != overlay(rgb, single)).any(axis=2)
        rows = np.nonzero(diff.any(axis=1))[0]
        heights.append(rows.max() - rows.min() + 1)
    assert heights[1] > 2 * heights[0]


def test_overlay_without_segments_and_bad_input():
    rgb = np.zeros((10, 12, 3), np.uint8)
    empty = PanopticResult(segment_ids=np.zeros((10, 12), np.int32))
    np.testing.assert_array_equal(overlay(rgb, empty), rgb)
    with pytest.raises(ValueError, match="uint8"):
        overlay(rgb.astype(np.float32), empty)
    with pytest.raises(ValueError, match="does not match"):
        overlay(np.zeros((11, 12, 3), np.uint8), empty)
    with pytest.raises(ValueError, match="alpha"):
        overlay(rgb, empty, alpha=1.5)


def test_colorize_labels():
    labels = np.array([[0, 1, 2], [2, -1, 7]], dtype=np.int32)
    out = colorize_labels(labels, 3)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 2], out[1, 0])  # same class, same colour
    assert (out[1, 1] == 0).all() and (out[1, 2] == 0).all()  # out of range: black
    assert len({tuple(c) for c in out[0]}) == 3
    palette = class_palette(133)
    assert len({tuple(c) for c in palette}) == 133  # distinct for a COCO-size vocabulary
    assert class_color(5) == class_color(5) and class_color(5) != class_color(5, 1)
    with pytest.raises(ValueError):
        colorize_labels(labels.astype(np.float32), 3)
