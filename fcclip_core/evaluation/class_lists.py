"""Class lists of evaluation datasets: a vocabulary plus the dataset's id of every class.

The official FC-CLIP evaluation vocabularies ship as package data
(``fcclip_core/data/eval_vocabularies/*.json`` and the COCO list in ``data/coco_panoptic.json``):
class names with the official synonyms, thing/stuff flags and dataset ids, in the official
order. They keep the official quirks: ADE20K-847 has nine labels that name two different
classes, so these lists are parsed with duplicate labels allowed (the ROS service still
refuses them from users).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fcclip_core.vocabulary import DATA_DIR, Vocabulary, load_vocabulary_file, parse_vocabulary

EVAL_VOCABULARY_DIR = DATA_DIR / "eval_vocabularies"
# Keys under which a class-list JSON gives the dataset id of each class (the COCO file predates the first).
_ID_KEYS = ("dataset_ids", "coco_category_ids")


@dataclass(frozen=True)
class EvalClassList:
    """The classes a model is asked for (class index = position) and their ids in the dataset files."""

    name: str
    vocabulary: Vocabulary
    dataset_ids: Optional[tuple[int, ...]] = None  # None: not given (custom data fills it from its GT)

    def __post_init__(self) -> None:
        if self.dataset_ids is not None:
            if len(self.dataset_ids) != len(self.vocabulary):
                raise ValueError(f"class list {self.name!r}: {len(self.dataset_ids)} dataset ids for "
                                 f"{len(self.vocabulary)} classes")
            if len(set(self.dataset_ids)) != len(self.dataset_ids):
                raise ValueError(f"class list {self.name!r}: dataset ids repeat")

    def with_dataset_ids(self, dataset_ids: tuple[int, ...]) -> "EvalClassList":
        return EvalClassList(self.name, self.vocabulary, tuple(int(i) for i in dataset_ids))

    def with_names(self, vocabulary: Vocabulary) -> "EvalClassList":
        """The same classes (ids, thing flags) asked for with other names or synonyms."""
        if len(vocabulary) != len(self.vocabulary):
            raise ValueError(f"the vocabulary has {len(vocabulary)} classes but {self.name!r} has "
                             f"{len(self.vocabulary)}: give one entry per class, in the class list's order")
        renamed = parse_vocabulary([entry.text for entry in vocabulary.entries], isthing=list(self.vocabulary.thing_mask),
                                   allow_duplicate_labels=True)
        return EvalClassList(self.name, renamed, self.dataset_ids)


def packaged_class_list_names() -> list[str]:
    """Names of the shipped official evaluation class lists."""
    return ["coco_panoptic"] + sorted(p.stem for p in EVAL_VOCABULARY_DIR.glob("*.json"))


def load_class_list(name_or_path: str | Path) -> EvalClassList:
    """A shipped class list by name (see ``packaged_class_list_names``) or a class-list file.

    A file is any vocabulary file ``load_vocabulary_file`` reads (text, JSON, YAML); a JSON or
    YAML mapping may add ``dataset_ids``: the id each class has in the dataset's label files.
    """
    path = _packaged_path(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"no class list {str(name_or_path)!r}: give a file or one of {packaged_class_list_names()}")
    vocabulary = load_vocabulary_file(path, allow_duplicate_labels=True)
    ids = _dataset_ids(path)
    return EvalClassList(path.stem, vocabulary, ids)


def _packaged_path(name: str) -> Optional[Path]:
    if name == "coco_panoptic":
        return DATA_DIR / "coco_panoptic.json"
    candidate = EVAL_VOCABULARY_DIR / f"{name}.json"
    return candidate if candidate.is_file() else None


def _dataset_ids(path: Path) -> Optional[tuple[int, ...]]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
    elif suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    else:
        return None
    if not isinstance(data, dict):
        return None
    for key in _ID_KEYS:
        if key in data:
            ids = data[key]
            if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise ValueError(f"{path}: `{key}` must be a list of integers")
            return tuple(ids)
    return None
