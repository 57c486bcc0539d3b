"""Reading and writing label images: class-index maps (8/16-bit PNG or TIFF) and COCO panoptic PNGs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def read_label_map(path: str | Path) -> np.ndarray:
    """A single-channel label image as an int64 [H, W] array (8- or 16-bit PNG, 16-bit TIFF)."""
    with Image.open(path) as image:
        array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"{path}: a label image must have one channel, got shape {array.shape}")
    return array.astype(np.int64)


def write_label_map(path: str | Path, labels: np.ndarray) -> None:
    """Write class indices as an 8-bit PNG when they fit, else a 16-bit PNG (atomically)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 65535):
        raise ValueError("label values must lie in 0..65535 to be stored in a PNG")
    dtype = np.uint8 if not labels.size or labels.max() <= 255 else np.uint16
    _save_atomic(Image.fromarray(labels.astype(dtype)), Path(path))


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """Segment ids of a COCO panoptic PNG: id = R + 256 G + 256^2 B, as int64 [H, W]."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def write_panoptic_png(path: str | Path, segment_ids: np.ndarray) -> None:
    """Write segment ids in the COCO panoptic RGB encoding (atomically)."""
    ids = np.asarray(segment_ids).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 256 ** 3):
        raise ValueError("panoptic segment ids must lie in 0..256^3-1")
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    _save_atomic(Image.fromarray(rgb), Path(path))


def _save_atomic(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    image.save(partial, format="PNG")
    os.replace(partial, path)
