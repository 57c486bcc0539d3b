"""Datasets in their standard on-disk layouts, read into a list of samples to predict and score.

Layouts (paths relative to the dataset root, see ``eval_benchmarks.yaml``):
- ``panoptic``: COCO-panoptic JSON + PNG folder (COCO, ADE20K, Mapillary Vistas, custom data);
  the image of annotation ``x.png`` is ``<images>/x.jpg``; semantic labels ``<semantic_root>/x.png``.
- ``cityscapes``: the Cityscapes panoptic JSON of cityscapesScripts; images
  ``leftImg8bit/val/<city>/<id>_leftImg8bit.png``, labels ``gtFine/val/<city>/<id>_gtFine_labelTrainIds.png``.
- ``semantic``: an image folder and a label folder paired by file name (detectron2's
  ``load_sem_seg``): ``.png`` or 16-bit ``.tif`` labels holding class indices.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from fcclip_core.evaluation.benchmarks import BenchmarkSpec
from fcclip_core.evaluation.class_lists import EvalClassList

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LABEL_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass(frozen=True)
class EvalSample:
    """One image and where its ground truth is."""

    key: str  # unique file-name stem: names the cached prediction files
    image: Path
    image_id: Any  # the panoptic JSON's image_id (the key for semantic-only data)
    panoptic_annotation: Optional[dict] = None  # the GT JSON annotation (file_name, segments_info)
    semantic_gt: Optional[Path] = None
    instance_image_id: Optional[int] = None  # the image's id in the instances JSON


@dataclass(frozen=True)
class EvalDataset:
    """A benchmark's samples, class list (with dataset ids) and ground-truth files."""

    spec: BenchmarkSpec
    root: Path
    class_list: EvalClassList
    samples: tuple[EvalSample, ...]
    panoptic_json: Optional[Path] = None
    panoptic_root: Optional[Path] = None
    instances_json: Optional[Path] = None

    @property
    def contiguous_of(self) -> dict[int, int]:
        """Dataset id -> class index."""
        assert self.class_list.dataset_ids is not None
        return {dataset_id: index for index, dataset_id in enumerate(self.class_list.dataset_ids)}


def load_dataset(spec: BenchmarkSpec, root: str | Path, class_list: EvalClassList) -> EvalDataset:
    """Read the sample list of ``spec`` under ``root``; raises ValueError naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset root {root} is not a folder")
    layout = spec.layout
    images = _existing_dir(root / layout.images, "image folder")
    if layout.kind == "semantic":
        samples = _semantic_samples(images, _existing_dir(root / layout.semantic_root, "label folder"))
        ids = class_list.dataset_ids or tuple(range(len(class_list.vocabulary)))
        return EvalDataset(spec, root, class_list.with_dataset_ids(ids), samples)

    panoptic_json = _existing_file(root / layout.panoptic_json, "panoptic JSON")
    panoptic_root = _existing_dir(root / layout.panoptic_root, "panoptic PNG folder")
    doc = json.loads(panoptic_json.read_text(encoding="utf-8"))
    class_list = _with_ids_from_categories(class_list, doc.get("categories", []), panoptic_json)
    instances_json = _existing_file(root / layout.instances_json, "instances JSON") \
        if "instance" in spec.tasks and layout.instances_json else None
    instance_ids = _instance_ids_by_stem(instances_json) if instances_json else {}
    semantic_root = _existing_dir(root / layout.semantic_root, "semantic label folder") \
        if layout.semantic_root else None
    samples = []
    for ann in doc.get("annotations", []):
        stem = Path(ann["file_name"]).stem
        if layout.kind == "cityscapes":
            city = str(ann["image_id"]).split("_")[0]
            key = str(ann["image_id"])
            image = images / city / f"{key}_leftImg8bit.png"
            semantic = semantic_root / city / f"{key}_gtFine_labelTrainIds.png" if semantic_root else None
        else:
            key = stem
            image = _image_for_stem(images, stem)
            semantic = semantic_root / f"{stem}.png" if semantic_root else None
        samples.append(EvalSample(key=key, image=image, image_id=ann["image_id"], panoptic_annotation=ann,
                                  semantic_gt=semantic, instance_image_id=instance_ids.get(Path(image).stem)))
    _check_samples(samples, panoptic_root, "instance" in spec.tasks)
    return EvalDataset(spec, root, class_list, tuple(samples), panoptic_json, panoptic_root, instances_json)


def semantic_from_panoptic(segment_ids: np.ndarray, segments_info: list[dict], contiguous_of: dict[int, int],
                           ignore_label: int = 255) -> np.ndarray:
    """Class-index map of a panoptic ground truth (crowd regions keep their class; void -> ignore)."""
    labels = np.full(segment_ids.shape, ignore_label, dtype=np.int64)
    for segment in segments_info:
        labels[segment_ids == segment["id"]] = contiguous_of[segment["category_id"]]
    return labels


def _semantic_samples(images: Path, labels: Path) -> tuple[EvalSample, ...]:
    image_files = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    label_files = {p.stem: p for p in sorted(labels.iterdir()) if p.suffix.lower() in LABEL_SUFFIXES}
    if not label_files:
        raise ValueError(f"no label images (.png/.tif) in {labels}")
    missing = sorted(set(label_files) - set(image_files))
    if missing:
        raise ValueError(f"{len(missing)} label image(s) in {labels} have no image in {images}, e.g. {missing[:3]}")
    return tuple(EvalSample(key=stem, image=image_files[stem], image_id=stem, semantic_gt=label_files[stem])
                 for stem in sorted(label_files))


def _with_ids_from_categories(class_list: EvalClassList, categories: list[dict], source: Path) -> EvalClassList:
    """Give a class list without dataset ids the GT's category ids (class i = i-th category)."""
    category_ids = [int(c["id"]) for c in categories]
    if class_list.dataset_ids is None:
        if len(category_ids) != len(class_list.vocabulary):
            raise ValueError(f"{source} has {len(category_ids)} categories but the class list has "
                             f"{len(class_list.vocabulary)} classes")
        return class_list.with_dataset_ids(tuple(category_ids))
    unknown = sorted(set(category_ids) - set(class_list.dataset_ids))
    if unknown:
        raise ValueError(f"{source} has categories {unknown[:5]} that the class list {class_list.name!r} lacks")
    return class_list


def _instance_ids_by_stem(instances_json: Path) -> dict[str, int]:
    doc = json.loads(instances_json.read_text(encoding="utf-8"))
    return {Path(image["file_name"]).stem: int(image["id"]) for image in doc.get("images", [])}


def _image_for_stem(images: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = images / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return images / f"{stem}.jpg"  # reported as missing by _check_samples


def _check_samples(samples: list[EvalSample], panoptic_root: Path, need_instances: bool) -> None:
    if not samples:
        raise ValueError("the panoptic JSON has no annotations")
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        raise ValueError("two annotations share a file name")
    for sample in samples:
        for path, what in ((sample.image, "image"), (panoptic_root / sample.panoptic_annotation["file_name"], "panoptic PNG"),
                           (sample.semantic_gt, "semantic label")):
            if path is not None and not path.is_file():
                raise ValueError(f"missing {what} of {sample.key}: {path}")
        if need_instances and sample.instance_image_id is None:
            raise ValueError(f"image {sample.image.name} is not in the instances JSON")


def _existing_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ValueError(f"missing {what}: {path}")
    return path


def _existing_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ValueError(f"missing {what}: {path}")
    return path
