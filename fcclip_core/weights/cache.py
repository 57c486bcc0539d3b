"""The weights cache: one directory per model, and a manifest of what has been verified.

Layout (``$FCCLIP_WEIGHTS_DIR``, default ``${XDG_CACHE_HOME:-~/.cache}/fcclip_ros/weights``)::

    <model>/
        manifest.json                 verified files: role -> name, size, sha256, origin, time
        fcclip_cocopan.pth            the FC-CLIP checkpoint (catalogue file name)
        open_clip_<name>-<tag>.<ext>  the open_clip weights that complete it
        fcclip_<model>.safetensors    the single-file export (`fcclip-weights export`)
        .partial/                     downloads and imports under way: *.part (+ .part.json
                                      resume data); never a final name

A file gets its final name only after it has been checked (keys, shapes, hash), and it is
"complete" only once the manifest, written atomically after the rename, lists it with the same
size and modification time. ``list`` therefore reads no weights; ``list --verify`` re-hashes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

CACHE_ENV = "FCCLIP_WEIGHTS_DIR"
MANIFEST_NAME = "manifest.json"
PARTIAL_DIR = ".partial"
MANIFEST_VERSION = 1
ROLES = ("checkpoint", "clip", "export")
_HASH_CHUNK = 8 << 20


def default_cache_dir() -> Path:
    """``$FCCLIP_WEIGHTS_DIR``, else ``$XDG_CACHE_HOME/fcclip_ros/weights`` (``~/.cache`` by default)."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fcclip_ros" / "weights"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory and rename: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class FileRecord:
    """A verified file of a model directory, as the manifest holds it."""

    role: str  # "checkpoint", "clip" or "export"
    name: str  # file name inside the model directory
    size: int
    sha256: str
    mtime_ns: int
    origin: str  # where it came from: "gdrive:<id>", a URL, "import:<path>", "export"
    verified_at: str
    needs_clip: bool = True  # checkpoint only: False when it carries the CLIP text tower itself

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FileRecord":
        fields = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in fields})


class ModelDir:
    """One model's directory in the cache: paths, manifest, lock."""

    def __init__(self, cache_dir: Path, model: str) -> None:
        self.root = Path(cache_dir) / model
        self.model = model

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def partial_dir(self) -> Path:
        return self.root / PARTIAL_DIR

    def path(self, name: str) -> Path:
        return self.root / name

    def part_path(self, name: str) -> Path:
        return self.partial_dir / f"{name}.part"

    def ensure(self) -> None:
        self.partial_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer per model directory at a time (two downloads must not share a .part)."""
        from filelock import FileLock

        self.ensure()
        with FileLock(str(self.partial_dir / "lock")):
            yield

    # ------------------------------------------------------------------ manifest

    def read_manifest(self) -> dict[str, FileRecord]:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # an unreadable manifest vouches for nothing; files get re-verified
        records = {}
        for role, entry in (data.get("files") or {}).items():
            if role in ROLES and isinstance(entry, dict):
                with contextlib.suppress(TypeError):
                    records[role] = FileRecord.from_dict({**entry, "role": role})
        return records

    def write_manifest(self, records: dict[str, FileRecord]) -> None:
        data = {
            "format_version": MANIFEST_VERSION,
            "model": self.model,
            "files": {role: {k: v for k, v in rec.to_dict().items() if k != "role"} for role, rec in records.items()},
        }
        atomic_write_text(self.manifest_path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def record(self, role: str, name: str, *, sha256: str, origin: str, needs_clip: bool = True) -> FileRecord:
        """Add a file that has just been verified and given its final name."""
        stat = self.path(name).stat()
        rec = FileRecord(role=role, name=name, size=stat.st_size, sha256=sha256, mtime_ns=stat.st_mtime_ns,
                         origin=origin, verified_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), needs_clip=needs_clip)
        records = self.read_manifest()
        old = records.get(role)
        records[role] = rec
        self.write_manifest(records)
        if old is not None and old.name != name:
            with contextlib.suppress(OSError):
                self.path(old.name).unlink()
        return rec

    def forget(self, role: str) -> None:
        records = self.read_manifest()
        if records.pop(role, None) is not None:
            self.write_manifest(records)

    def complete(self, role: str) -> Optional[FileRecord]:
        """The record of ``role`` if its file is still exactly what was verified (size, mtime)."""
        rec = self.read_manifest().get(role)
        if rec is None:
            return None
        try:
            stat = self.path(rec.name).stat()
        except OSError:
            return None
        if stat.st_size != rec.size or stat.st_mtime_ns != rec.mtime_ns:
            return None
        return rec


def publish(part: Path, final: Path) -> None:
    """Give a verified file its final name, atomically (same file system)."""
    fsync_file(part)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)


def copy_to_part(source: Path, part: Path) -> str:
    """Copy ``source`` to ``part``, returning the sha256 of the bytes written."""
    part.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(source, "rb") as src, open(part, "wb") as dst:
        for block in iter(lambda: src.read(_HASH_CHUNK), b""):
            digest.update(block)
            dst.write(block)
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest()


def remove_quietly(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
