"""Per-image predictions on disk, in the formats ``fcclip-eval score`` reads.

``<out>/panoptic/<key>.png`` + ``<key>.json`` (COCO panoptic, dataset category ids),
``<out>/semantic/<key>.png`` (class indices), ``<out>/instances/<key>.json`` (COCO results),
and ``<out>/done/<key>.json`` written last: an image with a done record is complete, so an
interrupted run resumes after the last finished image.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from fcclip_core.evaluation.instance_ap import encode_masks
from fcclip_core.evaluation.label_files import write_label_map, write_panoptic_png
from fcclip_core.results import InstanceResult, PanopticResult


class PredictionStore:
    """Reads and writes the cached predictions of one run."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def is_done(self, key: str) -> bool:
        return (self.folder / "done" / f"{key}.json").is_file()

    def record(self, key: str) -> dict:
        return json.loads((self.folder / "done" / f"{key}.json").read_text(encoding="utf-8"))

    def save(self, key: str, image_id: Any, *, dataset_ids: Sequence[int], panoptic: Optional[PanopticResult],
             semantic: Optional[np.ndarray], instances: Optional[InstanceResult],
             instance_image_id: Optional[int], seconds: float) -> None:
        """Write one image's predictions, then its done record."""
        if panoptic is not None:
            write_panoptic_png(self.folder / "panoptic" / f"{key}.png", panoptic.segment_ids)
            segments = [{"id": s.id, "category_id": int(dataset_ids[s.category_id]), "isthing": bool(s.isthing),
                         "area": int(s.area), "score": float(s.score)} for s in panoptic.segments if s.area > 0]
            _write_json(self.folder / "panoptic" / f"{key}.json",
                        {"image_id": image_id, "file_name": f"{key}.png", "segments_info": segments})
        if semantic is not None:
            write_label_map(self.folder / "semantic" / f"{key}.png", semantic)
        if instances is not None:
            entries = [{"image_id": instance_image_id, "category_id": int(dataset_ids[c]), "segmentation": rle,
                        "score": float(s)}
                       for c, s, rle in zip(instances.classes.tolist(), instances.scores.tolist(),
                                            encode_masks(instances.masks))]
            _write_json(self.folder / "instances" / f"{key}.json", entries)
        _write_json(self.folder / "done" / f"{key}.json", {"key": key, "seconds": seconds})

    def panoptic_annotations(self, keys: Sequence[str]) -> list[dict]:
        return [json.loads((self.folder / "panoptic" / f"{key}.json").read_text(encoding="utf-8")) for key in keys]

    def instance_results(self, keys: Sequence[str]) -> list[dict]:
        results: list[dict] = []
        for key in keys:
            results.extend(json.loads((self.folder / "instances" / f"{key}.json").read_text(encoding="utf-8")))
        return results

    def write_combined(self, keys: Sequence[str], *, panoptic: bool, instances: bool) -> dict[str, Path]:
        """The standard whole-dataset files (``panoptic.json``, ``instances.json``) of ``keys``."""
        written = {}
        if panoptic:
            written["panoptic_json"] = _write_json(self.folder / "panoptic.json",
                                                   {"annotations": self.panoptic_annotations(keys)})
        if instances:
            written["instances_json"] = _write_json(self.folder / "instances.json", self.instance_results(keys))
        return written


def _write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    os.replace(partial, path)
    return path
