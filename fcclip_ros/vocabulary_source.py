"""The node's side of the vocabulary: where the first one comes from, request limits, persistence.

Parsing and validation of class strings is ``fcclip_core.vocabulary``'s job; this module adds
what only the node needs: size limits for service requests, the choice between parameter, file,
saved state and the COCO default at start, and the state file that makes a restart keep the
last accepted vocabulary.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from fcclip_core.vocabulary import (Vocabulary, coco_panoptic_vocabulary, load_vocabulary_file,
                                    parse_vocabulary)


@dataclass(frozen=True)
class RequestLimits:
    max_classes: int
    max_label_length: int


def parse_request(classes: Sequence[str], stuff: Sequence[str], limits: RequestLimits) -> Vocabulary:
    """A Vocabulary from service/parameter strings; ValueError with a clear message when unusable."""
    if len(classes) == 0:
        raise ValueError("the class list is empty; give at least one class")
    if len(classes) > limits.max_classes:
        raise ValueError(f"{len(classes)} classes exceed the limit of {limits.max_classes} (max_classes)")
    for index, text in enumerate(list(classes) + list(stuff)):
        if len(text) > limits.max_label_length:
            where = f"class {index}" if index < len(classes) else f"stuff entry {index - len(classes)}"
            raise ValueError(f"{where} is {len(text)} characters long, more than the limit of "
                             f"{limits.max_label_length} (max_label_length): {text[:40]!r}...")
    return parse_vocabulary(list(classes), stuff=list(stuff))


def as_request(vocabulary: Vocabulary) -> tuple[list[str], list[str]]:
    """The (classes, stuff) strings that parse back into ``vocabulary``."""
    classes = [entry.text for entry in vocabulary.entries]
    stuff = [entry.names[0] for entry in vocabulary.entries if not entry.isthing]
    return classes, stuff


def save_state(path: Path, vocabulary: Vocabulary, version: int) -> None:
    """Write the vocabulary to ``path`` atomically (a crash never leaves half a file)."""
    classes, stuff = as_request(vocabulary)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"version": int(version), "classes": classes, "stuff": stuff}, sort_keys=False,
                          allow_unicode=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_state(path: Path, limits: RequestLimits) -> Vocabulary:
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ValueError(f"{path} is not a saved vocabulary (expected a mapping with a `classes` list)")
    return parse_request([str(c) for c in data["classes"]], [str(s) for s in data.get("stuff") or []], limits)


def initial_vocabulary(*, classes: Sequence[str], stuff: Sequence[str], vocabulary_file: str, state_file: str,
                       limits: RequestLimits) -> tuple[Vocabulary, str]:
    """The vocabulary to start with and a few words on where it came from.

    Order: the saved state (when the file exists), the `vocabulary` parameter, the vocabulary
    file, the COCO panoptic classes. Raises ValueError naming the source that is wrong.
    """
    if state_file and Path(state_file).expanduser().is_file():
        path = Path(state_file).expanduser()
        try:
            return load_state(path, limits), f"saved state {path}"
        except (OSError, ValueError, yaml.YAMLError) as error:
            raise ValueError(f"vocabulary_state_file {path}: {error}") from error
    if classes:
        try:
            return parse_request(classes, stuff, limits), "the vocabulary parameter"
        except ValueError as error:
            raise ValueError(f"vocabulary parameter: {error}") from error
    if vocabulary_file:
        path = Path(vocabulary_file).expanduser()
        try:
            vocabulary = load_vocabulary_file(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"vocabulary_file {path}: {error}") from error
        if len(vocabulary.entries) > limits.max_classes:
            raise ValueError(f"vocabulary_file {path}: {len(vocabulary.entries)} classes exceed the limit "
                             f"of {limits.max_classes} (max_classes)")
        return vocabulary, f"file {path}"
    return coco_panoptic_vocabulary(), "the COCO panoptic classes (default)"
