"""Tiny datasets written in the real on-disk layouts (COCO, ADE20K, Cityscapes, Mapillary
Vistas, detectron2's semantic folders, a robot's custom folder) for loader and end-to-end tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from fcclip_core.evaluation.instance_ap import encode_masks
from fcclip_core.evaluation.class_lists import EvalClassList
from fcclip_core.evaluation.label_files import write_label_map, write_panoptic_png

HEIGHT, WIDTH = 48, 64


def scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image and its layout: region 1 = top band, 2 = bottom band, 3 = a box, 0 = a void strip."""
    rng = np.random.default_rng(seed)
    regions = np.ones((HEIGHT, WIDTH), np.int64)
    regions[HEIGHT // 2:] = 2
    y, x = 8 + seed % 5, 10 + 3 * (seed % 7)
    regions[y:y + 16, x:x + 20] = 3
    regions[:, :2] = 0
    colours = np.array([[0, 0, 0], [120, 160, 220], [90, 70, 40], [200, 30, 30]], np.uint8)
    image = colours[regions] + rng.integers(0, 20, size=(HEIGHT, WIDTH, 3)).astype(np.uint8)
    return image, regions


def write_panoptic_split(root: Path, paths: dict, category_ids: tuple[int, int, int], isthing: tuple[bool, ...],
                         keys: list[str], *, image_name=lambda key: f"{key}.jpg", panoptic_name=lambda key: f"{key}.png",
                         semantic_name=None,
                         semantic_values=(0, 1, 2), semantic_ignore=255, instances: bool = False,
                         image_ids=None, all_categories=None) -> dict:
    """Write images, panoptic PNGs + JSON (3 regions -> 3 categories), semantic PNGs, instances JSON.

    ``all_categories``: (id, isthing) of every dataset category for the JSON files, as the real
    files list them (default: the three used).
    """
    annotations, images_doc, instance_anns = [], [], []
    for n, key in enumerate(keys):
        image, regions = scene(n)
        image_path = root / paths["images"] / image_name(key)
        image_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(image_path, quality=95) if image_path.suffix == ".jpg" else \
            Image.fromarray(image).save(image_path)
        segment_ids = np.where(regions > 0, regions * 10 + n, 0)
        write_panoptic_png(root / paths["panoptic_root"] / panoptic_name(key), segment_ids)
        segments = [{"id": int(r * 10 + n), "category_id": category_ids[r - 1], "iscrowd": 0,
                     "area": int((regions == r).sum()), "bbox": [0, 0, 1, 1]} for r in (1, 2, 3)]
        image_id = image_ids[n] if image_ids else key
        annotations.append({"image_id": image_id, "file_name": panoptic_name(key), "segments_info": segments})
        if semantic_name:
            semantic = np.full(regions.shape, semantic_ignore, np.int64)
            for r in (1, 2, 3):
                semantic[regions == r] = semantic_values[r - 1]
            write_label_map(root / paths["semantic_root"] / semantic_name(key), semantic)
        images_doc.append({"id": n + 1, "file_name": image_name(key), "height": HEIGHT, "width": WIDTH})
        for r in (1, 2, 3):
            if isthing[r - 1]:
                instance_anns.append({"id": len(instance_anns) + 1, "image_id": n + 1, "category_id": category_ids[r - 1],
                                      "segmentation": encode_masks((regions == r)[None])[0], "iscrowd": 0,
                                      "area": int((regions == r).sum()), "bbox": [0, 0, 1, 1]})
    listed = all_categories or list(zip(category_ids, isthing))
    categories = [{"id": c, "name": f"cat{c}", "isthing": int(t)} for c, t in listed]
    path = root / paths["panoptic_json"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"annotations": annotations, "categories": categories,
                                "images": [{"id": a["image_id"], "file_name": image_name(k)}
                                           for a, k in zip(annotations, keys)]}))
    if instances:
        (root / paths["instances_json"]).write_text(json.dumps(
            {"images": images_doc, "annotations": instance_anns,
             "categories": [c for c in categories if c["isthing"]]}))
    return {"annotations": annotations}


def write_semantic_split(root: Path, images: str, labels: str, keys: list[str], values=(0, 1, 2),
                         ignore: int = 255, suffix: str = ".png") -> None:
    for n, key in enumerate(keys):
        image, regions = scene(n)
        (root / images).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / images / f"{key}.jpg", quality=95)
        semantic = np.full(regions.shape, ignore, np.int64)
        for r in (1, 2, 3):
            semantic[regions == r] = values[r - 1]
        target = root / labels / f"{key}{suffix}"
        if suffix == ".tif":
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(semantic.astype(np.uint16)).save(target)
        else:
            write_label_map(target, semantic)


def dataset_categories(class_list: EvalClassList) -> list[tuple[int, bool]]:
    """(id, isthing) of every class of a class list: what a real dataset JSON lists."""
    return list(zip(class_list.dataset_ids, class_list.vocabulary.thing_mask))
