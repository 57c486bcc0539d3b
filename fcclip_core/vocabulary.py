"""Open-vocabulary class lists: parsing, validation, prompts and the "seen class" rule of FC-CLIP.

A vocabulary is an ordered list of classes; the class id is the position in the list. Each class
is written in FC-CLIP's synonym format, one string with comma-separated names such as
``"cat,cats,kitty"`` or ``"laptop computer, laptop"``. The names are split exactly as the
official code splits them (``", "`` becomes ``","``, then split at ``","``), so the text
classifier gets one row per name and a class scores as its best-matching name.

A class counts as *seen* (the official ``category_overlapping_mask``) when any of its names is
exactly one of the names of the COCO-panoptic training classes; seen and unseen classes get
different weights in FC-CLIP's in/out-of-vocabulary ensemble.

This module needs no torch: a vocabulary can be checked and stored without loading a model.
"""
from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

# The 14 prompt templates FC-CLIP ensembles for every class name (the ViLD prompt set).
PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)

# Default limits of parse_vocabulary. The official evaluation vocabularies stay well inside them
# (at most 847 classes, 74 names in one class, 29 characters in one name).
MAX_CLASSES = 1024
MAX_SYNONYMS = 128
MAX_NAME_CHARS = 120

DATA_DIR = Path(__file__).resolve().parent / "data"
COCO_PANOPTIC_FILE = DATA_DIR / "coco_panoptic.json"

_STRUCTURED_SUFFIXES = (".json", ".yaml", ".yml")
_ENTRY_KEYS = frozenset({"name", "isthing"})


def split_synonyms(text: str) -> tuple[str, ...]:
    """The names of one class entry, split as the official FC-CLIP code does (no other cleaning)."""
    return tuple(text.replace(", ", ",").split(","))


def build_prompts(names: Iterable[str], templates: Sequence[str] = PROMPT_TEMPLATES) -> list[str]:
    """Prompts in the official order: for each name, every template filled with it."""
    return [template.format(name) for name in names for template in templates]


@dataclass(frozen=True)
class ClassEntry:
    """One class: the entry as given, its names (synonyms) and whether it is a thing (countable)."""

    text: str
    names: tuple[str, ...]
    isthing: bool = True

    @classmethod
    def from_text(cls, text: str, isthing: bool = True) -> "ClassEntry":
        return cls(text=text, names=split_synonyms(text), isthing=bool(isthing))

    @property
    def label(self) -> str:
        """The first name: what the class is called in results."""
        return self.names[0]


@dataclass(frozen=True)
class Vocabulary:
    """An ordered list of classes; class id = index into ``entries``."""

    entries: tuple[ClassEntry, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.entries, tuple):
            object.__setattr__(self, "entries", tuple(self.entries))
        if not self.entries:
            raise ValueError("a vocabulary needs at least one class")
        for index, entry in enumerate(self.entries):
            if not isinstance(entry, ClassEntry) or not entry.names:
                raise ValueError(f"class {index} is not a ClassEntry with at least one name: {entry!r}")

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(entry.label for entry in self.entries)

    @property
    def synonym_counts(self) -> tuple[int, ...]:
        """Names per class (the official code calls this ``num_templates``)."""
        return tuple(len(entry.names) for entry in self.entries)

    @property
    def thing_mask(self) -> tuple[bool, ...]:
        return tuple(entry.isthing for entry in self.entries)

    @property
    def names(self) -> tuple[str, ...]:
        """All names, class by class: the order of the text-classifier rows."""
        return tuple(name for entry in self.entries for name in entry.names)

    def prompts(self, templates: Sequence[str] = PROMPT_TEMPLATES) -> list[str]:
        """Every prompt of the vocabulary in the official order (class, name, template)."""
        return build_prompts(self.names, templates)

    def seen_mask(self, train: "Vocabulary | None" = None) -> tuple[bool, ...]:
        """Per class: does any of its names equal a name of a ``train`` class (default COCO panoptic)?"""
        train_names = (train or coco_panoptic_vocabulary()).name_set
        return tuple(not train_names.isdisjoint(entry.names) for entry in self.entries)

    @cached_property
    def name_set(self) -> frozenset[str]:
        return frozenset(self.names)

    @cached_property
    def key(self) -> str:
        """A stable identity of the ordered classes and their thing/stuff flags (sha256 hex)."""
        payload = json.dumps([[entry.text, entry.isthing] for entry in self.entries], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def parse_vocabulary(
    classes: Sequence[str],
    stuff: Iterable[int | str] = (),
    *,
    isthing: Sequence[bool] | None = None,
    max_classes: int = MAX_CLASSES,
    max_synonyms: int = MAX_SYNONYMS,
    max_name_chars: int = MAX_NAME_CHARS,
    allow_duplicate_labels: bool = False,
) -> Vocabulary:
    """A checked Vocabulary from class strings in the synonym format.

    All classes are things unless ``stuff`` names them (by index, by entry text or by label,
    i.e. first name) or ``isthing`` gives one flag per class. Raises ValueError, saying which
    class is wrong, for: an empty list, too many classes, an empty name (``"cat,,dog"``), a name
    with leading/trailing whitespace or a control character, an over-long name, too many names,
    the same entry twice, and (unless ``allow_duplicate_labels``, which official benchmark
    vocabularies such as ADE20K-full need) two classes with the same label.
    """
    if isinstance(classes, (str, bytes)):
        raise ValueError("classes must be a list of class strings, not one string")
    classes = list(classes)
    if not classes:
        raise ValueError("the class list is empty; give at least one class")
    if len(classes) > max_classes:
        raise ValueError(f"{len(classes)} classes exceed the limit of {max_classes}")
    entries = [_parse_entry(index, text, max_synonyms, max_name_chars) for index, text in enumerate(classes)]
    _check_unique(entries, allow_duplicate_labels)
    flags = _thing_flags(entries, stuff, isthing)
    return Vocabulary(tuple(ClassEntry(e.text, e.names, flag) for e, flag in zip(entries, flags)))


def _parse_entry(index: int, text: Any, max_synonyms: int, max_name_chars: int) -> ClassEntry:
    if not isinstance(text, str):
        raise ValueError(f"class {index} is not a string: {text!r}")
    text = normalize_class_text(text)
    entry = ClassEntry.from_text(text)
    if len(entry.names) > max_synonyms:
        raise ValueError(f"class {index} has {len(entry.names)} names, more than the limit of {max_synonyms}")
    for name in entry.names:
        problem = _name_problem(name, max_name_chars)
        if problem:
            raise ValueError(f"class {index} ({text[:60]!r}): {problem}")
    return entry


def normalize_class_text(text: str) -> str:
    """One class string as typed or sent: NFC-composed, without surrounding whitespace.

    The same name typed with a combining accent or a precomposed one then gets one cached
    embedding, and a stray space at either end of a request does not make it invalid.
    """
    return unicodedata.normalize("NFC", text).strip()


def _control_character(name: str) -> str | None:
    """Where ``name`` has a control character (category Cc), described; None when it has none.

    Only Cc is refused: format characters (zero-width joiners in emoji), non-breaking spaces and
    other printable-looking Unicode are legitimate in class names.
    """
    for position, char in enumerate(name):
        if unicodedata.category(char) == "Cc":
            return f"control character U+{ord(char):04X} at position {position}"
    return None


def _name_problem(name: str, max_chars: int) -> str | None:
    if not name.strip():
        return "has an empty name (check for doubled or trailing commas)"
    if name != name.strip():
        return f"name {name!r} has leading or trailing whitespace (separate names with ',' or ', ')"
    control = _control_character(name)
    if control:
        return f"name {name!r} contains a {control}"
    if len(name) > max_chars:
        return f"name {name[:40]!r}... has {len(name)} characters, more than the limit of {max_chars}"
    return None


def _check_unique(entries: Sequence[ClassEntry], allow_duplicate_labels: bool) -> None:
    first_by_text: dict[str, int] = {}
    first_by_label: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if entry.text in first_by_text:
            raise ValueError(f"class {index} repeats class {first_by_text[entry.text]}: {entry.text!r}")
        first_by_text[entry.text] = index
        if not allow_duplicate_labels and entry.label in first_by_label:
            raise ValueError(f"class {index} ({entry.text!r}) has the same label {entry.label!r} as class "
                             f"{first_by_label[entry.label]} ({entries[first_by_label[entry.label]].text!r})")
        first_by_label.setdefault(entry.label, index)


def _thing_flags(entries: Sequence[ClassEntry], stuff: Iterable[int | str],
                 isthing: Sequence[bool] | None) -> list[bool]:
    stuff = [stuff] if isinstance(stuff, (str, int)) else list(stuff)
    if isthing is not None:
        if stuff:
            raise ValueError("give either `stuff` or `isthing`, not both")
        flags = list(isthing)
        if len(flags) != len(entries) or not all(isinstance(flag, bool) for flag in flags):
            raise ValueError(f"isthing needs one bool per class ({len(entries)}), got {isthing!r}")
        return flags
    flags = [True] * len(entries)
    for item in stuff:
        flags[_stuff_index(entries, item)] = False
    return flags


def _stuff_index(entries: Sequence[ClassEntry], item: int | str) -> int:
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise ValueError(f"stuff entries are class indices or class strings, got {item!r}")
    if isinstance(item, int):
        if not 0 <= item < len(entries):
            raise ValueError(f"stuff index {item} is outside the {len(entries)} classes")
        return item
    item = normalize_class_text(item)
    matches = [i for i, entry in enumerate(entries) if item == entry.text]
    if not matches:
        matches = [i for i, entry in enumerate(entries) if item == entry.label]
    if len(matches) != 1:
        what = "matches no class (give a class string or its first name)" if not matches else \
            f"is ambiguous: it is the label of classes {matches}"
        raise ValueError(f"stuff entry {item!r} {what}")
    return matches[0]


def load_vocabulary_file(path: str | Path, **limits: Any) -> Vocabulary:
    """Read a vocabulary file; ``limits`` go to ``parse_vocabulary``.

    Formats, chosen by the file's suffix:

    - ``.json`` / ``.yaml`` / ``.yml``: either a list of class entries, or a mapping with a
      ``classes`` list and an optional ``stuff`` list (class strings, labels or indices; the
      same shape the ROS node saves). A class entry is a string (a thing unless listed in
      ``stuff``) or a mapping ``{name: "sky,clouds", isthing: false}``. Other top-level keys
      (a name, a description) are ignored. ``fcclip_core/data/coco_panoptic.json`` is an example.
    - anything else, plain text: one class per line, in the synonym format; blank lines and
      lines starting with ``#`` are skipped; a line may start with ``thing:`` or ``stuff:``
      (default thing), e.g. ``stuff: sky,clouds``.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in _STRUCTURED_SUFFIXES:
        return _vocabulary_from_data(_load_structured(path, text), **limits)
    return _vocabulary_from_lines(text, **limits)


def _load_structured(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
    import yaml  # only YAML files need PyYAML

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from error


def _vocabulary_from_data(data: Any, **limits: Any) -> Vocabulary:
    stuff: list[Any] = []
    if isinstance(data, dict):
        if not isinstance(data.get("classes"), list):
            raise ValueError("a vocabulary mapping needs a `classes` list")
        stuff = data.get("stuff") or []
        if not isinstance(stuff, list):
            raise ValueError("`stuff` must be a list of class strings, labels or indices")
        data = data["classes"]
    if not isinstance(data, list):
        raise ValueError("a vocabulary file holds a list of classes or a mapping with a `classes` list")
    if not any(isinstance(item, dict) for item in data):
        return parse_vocabulary(data, stuff, **limits)
    if stuff:
        raise ValueError("give thing/stuff either per class (`isthing`) or in a `stuff` list, not both")
    texts, flags = [], []
    for index, item in enumerate(data):
        text, flag = _structured_entry(index, item)
        texts.append(text)
        flags.append(flag)
    return parse_vocabulary(texts, isthing=flags, **limits)


def _structured_entry(index: int, item: Any) -> tuple[Any, bool]:
    if isinstance(item, str):
        return item, True
    if not isinstance(item, dict) or "name" not in item or not set(item) <= _ENTRY_KEYS:
        raise ValueError(f"class {index} must be a string or a mapping with `name` and optional `isthing`, "
                         f"got {item!r}")
    flag = item.get("isthing", True)
    if not isinstance(flag, bool):
        raise ValueError(f"class {index}: isthing must be true or false, got {flag!r}")
    return item["name"], flag


def _vocabulary_from_lines(text: str, **limits: Any) -> Vocabulary:
    texts, flags = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        marker, sep, rest = line.partition(":")
        if sep and marker.strip().lower() in ("thing", "stuff"):
            texts.append(rest.strip())
            flags.append(marker.strip().lower() == "thing")
        else:
            texts.append(line)
            flags.append(True)
    return parse_vocabulary(texts, isthing=flags, **limits)


@lru_cache(maxsize=1)
def coco_panoptic_vocabulary() -> Vocabulary:
    """The 133 COCO-panoptic classes FC-CLIP was trained on, with the official synonyms and order."""
    return load_vocabulary_file(COCO_PANOPTIC_FILE)
