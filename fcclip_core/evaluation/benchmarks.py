"""Evaluation benchmarks as data: ``fcclip_core/data/eval_benchmarks.yaml`` (official test-time
settings, on-disk layout, paper numbers), plus the custom layout for a robot's own data."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import yaml

from fcclip_core.vocabulary import DATA_DIR

BENCHMARKS_FILE = DATA_DIR / "eval_benchmarks.yaml"
TASKS = ("panoptic", "instance", "semantic")
LAYOUT_KINDS = ("panoptic", "cityscapes", "semantic")
# What each task's headline metric is called in reports and in the paper's tables.
HEADLINE_METRIC = {"panoptic": "PQ", "instance": "AP", "semantic": "mIoU"}


@dataclass(frozen=True)
class Layout:
    """Where a dataset's files are, relative to the dataset root."""

    kind: str  # panoptic (COCO-panoptic JSON + PNGs), cityscapes (same, Cityscapes names), semantic
    images: str
    panoptic_json: Optional[str] = None
    panoptic_root: Optional[str] = None
    semantic_root: Optional[str] = None  # None with a panoptic layout: derive labels from the panoptic GT
    semantic_ignore: int = 255
    instances_json: Optional[str] = None


@dataclass(frozen=True)
class BenchmarkSpec:
    """One evaluation: dataset layout, class list, tasks, test resize and the paper's numbers."""

    name: str
    class_list: str  # shipped class-list name or a class-list file
    tasks: tuple[str, ...]
    layout: Layout
    min_size_test: int = 800
    max_size_test: int = 1333
    # Post-processing of the official eval configs (fcclip_convnext_large_eval_*.yaml): every
    # benchmark sets OBJECT_MASK_THRESHOLD 0.0 and keeps OVERLAP_THRESHOLD 0.8, 100 detections.
    object_mask_threshold: float = 0.0
    overlap_threshold: float = 0.8
    detections_per_image: int = 100
    description: str = ""
    paper: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown or not self.tasks:
            raise ValueError(f"benchmark {self.name!r}: tasks must be some of {TASKS}, got {self.tasks}")
        if self.layout.kind not in LAYOUT_KINDS:
            raise ValueError(f"benchmark {self.name!r}: layout kind must be one of {LAYOUT_KINDS}")
        if "instance" in self.tasks and not self.layout.instances_json:
            raise ValueError(f"benchmark {self.name!r}: the instance task needs layout.instances_json")
        if {"panoptic", "instance"} & set(self.tasks) and self.layout.kind == "semantic":
            raise ValueError(f"benchmark {self.name!r}: panoptic and instance tasks need panoptic ground truth")


@lru_cache(maxsize=1)
def _benchmark_table() -> dict[str, Any]:
    return yaml.safe_load(BENCHMARKS_FILE.read_text(encoding="utf-8"))


def benchmark_names() -> list[str]:
    """The shipped benchmarks, in the order of the paper's tables."""
    return list(_benchmark_table())


def load_benchmark(name: str) -> BenchmarkSpec:
    """The shipped benchmark ``name`` (see ``benchmark_names``)."""
    table = _benchmark_table()
    if name not in table:
        raise ValueError(f"unknown dataset {name!r}; choose one of {benchmark_names()} or `custom`")
    entry = table[name]
    return BenchmarkSpec(
        name=name,
        class_list=entry["class_list"],
        tasks=tuple(entry["tasks"]),
        layout=Layout(**entry["layout"]),
        min_size_test=int(entry["input"]["min_size_test"]),
        max_size_test=int(entry["input"]["max_size_test"]),
        **{key: entry["postprocess"][key] for key in entry.get("postprocess", {})},
        description=entry.get("description", ""),
        paper=dict(entry.get("paper", {})),
    )


def custom_benchmark(root: str | Path, class_list: str | Path, *, min_size_test: int = 800,
                     max_size_test: int = 1333) -> BenchmarkSpec:
    """A robot's own data: ``images/`` plus ``panoptic.json`` + ``panoptic/`` (COCO panoptic) or
    ``labels/`` (one class-index PNG per image, 255 = unlabelled), and a class-list file."""
    root = Path(root)
    if not (root / "images").is_dir():
        raise ValueError(f"custom dataset {root}: expected an images/ folder")
    if (root / "panoptic.json").is_file():
        layout = Layout(kind="panoptic", images="images", panoptic_json="panoptic.json", panoptic_root="panoptic",
                        semantic_root="labels" if (root / "labels").is_dir() else None)
        tasks: tuple[str, ...] = ("panoptic", "semantic")
    elif (root / "labels").is_dir():
        layout = Layout(kind="semantic", images="images", semantic_root="labels")
        tasks = ("semantic",)
    else:
        raise ValueError(f"custom dataset {root}: expected panoptic.json with panoptic/, or labels/")
    return BenchmarkSpec(name="custom", class_list=str(class_list), tasks=tasks, layout=layout,
                         min_size_test=min_size_test, max_size_test=max_size_test,
                         description=f"custom data in {root}")
