"""Colour overlays of segmentation results, for people looking at them (demo, ROS ~/overlay).

Colours are a pure function of class id (and, for things, of the instance's rank within its
class), so the same class keeps its colour across frames and runs.
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

from fcclip_core.results import PanopticResult, Segment

_GOLDEN = 0.618033988749895
# (value, saturation) variants for the instances of one thing class
_INSTANCE_SHADES = ((0.95, 0.85), (0.70, 0.95), (0.95, 0.50), (0.55, 0.75), (0.80, 0.65))


def class_color(class_id: int, instance: int = 0) -> tuple[int, int, int]:
    """RGB colour of a class; ``instance`` > 0 gives shades of it for further instances.

    Hues follow the golden-ratio sequence, so consecutive class ids are far apart on the
    colour wheel; saturation and brightness alternate to separate classes whose hues meet.
    """
    if class_id < 0 or instance < 0:
        raise ValueError(f"class_id and instance must be >= 0, got {class_id}, {instance}")
    hue = (class_id * _GOLDEN + 0.07 * instance) % 1.0
    value, sat = _INSTANCE_SHADES[instance % len(_INSTANCE_SHADES)]
    if class_id % 2:
        sat *= 0.8
    r, g, b = colorsys.hsv_to_rgb(hue, sat, value)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def class_palette(num_classes: int) -> np.ndarray:
    """[num_classes, 3] uint8 colours of ``class_color``."""
    return np.array([class_color(c) for c in range(num_classes)], dtype=np.uint8).reshape(-1, 3)


def colorize_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Colour image [H, W, 3] uint8 of a semantic label map; ids outside [0, K) are black."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer [H, W] map, got {labels.dtype} {labels.shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    lut = np.zeros((num_classes + 1, 3), dtype=np.uint8)  # last row: out of range
    lut[:num_classes] = class_palette(num_classes)
    index = np.where((labels >= 0) & (labels < num_classes), labels, num_classes)
    return lut[index]


def segment_colors(panoptic: PanopticResult) -> dict[int, tuple[int, int, int]]:
    """Colour of every segment id: its class colour, shaded per instance for things."""
    seen: dict[int, int] = {}
    colors = {}
    for seg in sorted(panoptic.segments, key=lambda s: s.id):
        rank = seen.get(seg.category_id, 0) if seg.isthing else 0
        seen[seg.category_id] = rank + 1
        colors[seg.id] = class_color(seg.category_id, rank)
    return colors


def _style(height: int, width: int) -> tuple[float, int, int]:
    """Font scale, text thickness and boundary thickness for an image size."""
    short = min(height, width)
    scale = float(np.clip(short / 900.0, 0.35, 1.6))
    thickness = max(1, int(round(scale * 1.6)))
    return scale, thickness, max(1, short // 400)


def _boundaries(ids: np.ndarray, thickness: int) -> np.ndarray:
    """Pixels of a segment next to a pixel of another id (inside segments only)."""
    edge = np.zeros(ids.shape, dtype=bool)
    horizontal = ids[:, 1:] != ids[:, :-1]
    vertical = ids[1:, :] != ids[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    if thickness > 1:
        kernel = np.ones((thickness, thickness), dtype=np.uint8)
        edge = cv2.dilate(edge.astype(np.uint8), kernel).astype(bool)
    return edge & (ids > 0)


def label_anchor(ids: np.ndarray, seg: Segment) -> tuple[int, int]:
    """(x, y) of the segment pixel farthest from its border: inside even for rings and L shapes."""
    x, y, w, h = seg.bbox
    crop = np.zeros((h + 2, w + 2), dtype=np.uint8)
    crop[1:-1, 1:-1] = ids[y:y + h, x:x + w] == seg.id
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
    cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return x + int(cx) - 1, y + int(cy) - 1


def _draw_label(image: np.ndarray, text: str, anchor: tuple[int, int], scale: float,
                thickness: int) -> None:
    """White text on a darkened box centred on the anchor, kept inside the image."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), baseline = cv2.getTextSize(text, font, scale, thickness)
    pad = max(1, thickness)
    h, w = image.shape[:2]
    box_w, box_h = tw + 2 * pad, th + baseline + 2 * pad
    x0 = int(np.clip(anchor[0] - box_w // 2, 0, max(0, w - box_w)))
    y0 = int(np.clip(anchor[1] - box_h // 2, 0, max(0, h - box_h)))
    box = image[y0:y0 + box_h, x0:x0 + box_w]
    box[:] = (box.astype(np.float32) * 0.35).astype(np.uint8)
    cv2.putText(image, text, (x0 + pad, y0 + pad + th), font, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)


def overlay(rgb: np.ndarray, panoptic: PanopticResult, alpha: float = 0.5,
            draw_labels: bool = True) -> np.ndarray:
    """The image with every panoptic segment tinted in its colour, outlined, and labelled.

    Pixels outside all segments (and all pixels when there are none) are left as they are.
    Labels read "<class> <score>" and sit at the segment's innermost pixel.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    ids = np.asarray(panoptic.segment_ids)
    if ids.shape != rgb.shape[:2]:
        raise ValueError(f"segment map {ids.shape} does not match the image {rgb.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    out = rgb.copy()
    if not panoptic.segments:
        return out
    colors = segment_colors(panoptic)
    lut = np.zeros((int(max(colors)) + 1, 3), dtype=np.float32)
    for sid, color in colors.items():
        lut[sid] = color
    inside = (ids > 0) & (ids < len(lut))
    tint = lut[np.where(inside, ids, 0)]
    blended = rgb.astype(np.float32) * (1.0 - alpha) + tint * alpha
    out[inside] = np.clip(np.rint(blended[inside]), 0, 255).astype(np.uint8)
    scale, text_thickness, edge_thickness = _style(*ids.shape)
    edge = _boundaries(np.where(inside, ids, 0), edge_thickness)
    out[edge] = (0.35 * lut[ids[edge]]).astype(np.uint8)  # a dark shade of the segment colour
    if draw_labels:
        for seg in sorted(panoptic.segments, key=lambda s: -s.area):
            if seg.area > 0:
                _draw_label(out, f"{seg.label} {seg.score:.2f}", label_anchor(ids, seg), scale,
                            text_thickness)
    return out
