"""The catalogue of released models: which checkpoint and which CLIP weights each one needs.

The catalogue is data (``fcclip_core/data/weights_catalogue.yaml``); a different file can be
given with ``FCCLIP_WEIGHTS_CATALOGUE`` (a mirror of our own, tests). ``FCCLIP_WEIGHTS_BASE_URL``
replaces every checkpoint source by ``<base>/<filename>``: an internal mirror, or a loopback
server standing in for Google Drive in tests.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from fcclip_core.config import available_model_configs
from fcclip_core.weights.errors import CatalogueError

DEFAULT_CATALOGUE = Path(__file__).resolve().parents[1] / "data" / "weights_catalogue.yaml"
CATALOGUE_ENV = "FCCLIP_WEIGHTS_CATALOGUE"
BASE_URL_ENV = "FCCLIP_WEIGHTS_BASE_URL"
SOURCE_KINDS = ("gdrive", "url")


@dataclass(frozen=True)
class Source:
    """One place a checkpoint can be fetched from: a Google Drive file id or a plain URL."""

    kind: str  # "gdrive" or "url"
    location: str  # the file id or the URL

    @property
    def browser_url(self) -> str:
        """Where a person opens it in a browser (for the air-gapped route)."""
        if self.kind == "gdrive":
            return f"https://drive.google.com/file/d/{self.location}/view"
        return self.location

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"


@dataclass(frozen=True)
class CheckpointSpec:
    filename: str
    sources: tuple[Source, ...]
    sha256: Optional[str] = None


@dataclass(frozen=True)
class ClipSpec:
    """The open_clip weights of the CLIP model; ``hf_hub`` overrides open_clip's registry."""

    open_clip_name: str
    pretrained_tag: str
    hf_hub: Optional[str] = None

    def hub_location(self) -> tuple[str, Optional[str]]:
        """(Hugging Face repo id, file name or None for open_clip's default names)."""
        hub = self.hf_hub
        if hub is None:
            import open_clip

            cfg = open_clip.get_pretrained_cfg(self.open_clip_name, self.pretrained_tag)
            hub = cfg.get("hf_hub") or None
            if hub is None:
                raise CatalogueError(
                    f"open_clip has no Hugging Face location for {self.open_clip_name}/{self.pretrained_tag}; "
                    "set clip.hf_hub in the catalogue")
        # "org/name/" or "org/name/file": the repo id is the first two parts.
        parts = hub.strip().split("/")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise CatalogueError(f"hf_hub {hub!r}: expected 'org/repo/' or 'org/repo/filename'")
        return "/".join(parts[:2]), ("/".join(parts[2:]) or None)

    @property
    def label(self) -> str:
        return f"{self.open_clip_name}/{self.pretrained_tag}"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config: str
    checkpoint: CheckpointSpec
    clip: ClipSpec
    description: str = ""

    @property
    def config_available(self) -> bool:
        """Whether the model config is shipped (the ResNet configs come in a later release)."""
        return self.config in available_model_configs()

    @property
    def export_filename(self) -> str:
        return f"fcclip_{self.name}.safetensors"

    def checkpoint_sources(self) -> tuple[Source, ...]:
        """The sources to try, after the ``FCCLIP_WEIGHTS_BASE_URL`` override."""
        base = os.environ.get(BASE_URL_ENV, "").strip()
        if base:
            return (Source("url", f"{base.rstrip('/')}/{self.checkpoint.filename}"),)
        return self.checkpoint.sources


@dataclass(frozen=True)
class Catalogue:
    models: Mapping[str, ModelEntry]
    default: str
    path: Path = field(default=DEFAULT_CATALOGUE)

    def get(self, name: Optional[str]) -> ModelEntry:
        """The entry called ``name`` (default: the catalogue's default), or the one model that uses
        the model config ``name`` (so callers holding a config name find its weights too)."""
        name = name or self.default
        if name not in self.models:
            by_config = [e for e in self.models.values() if e.config == name]
            if len(by_config) == 1:
                return by_config[0]
            raise CatalogueError(f"unknown model {name!r}; known models: {', '.join(self.models)} "
                                 "(see `fcclip-weights list`)")
        return self.models[name]

    def names(self) -> list[str]:
        return list(self.models)


def _source(data: Any, where: str) -> Source:
    if not isinstance(data, Mapping) or len(data) != 1:
        raise CatalogueError(f"{where}: a source is one of {{gdrive: ID}} or {{url: URL}}, got {data!r}")
    (kind, location), = data.items()
    if kind not in SOURCE_KINDS or not isinstance(location, str) or not location:
        raise CatalogueError(f"{where}: a source is one of {{gdrive: ID}} or {{url: URL}}, got {data!r}")
    return Source(kind, location)


def _entry(name: str, data: Any, where: str) -> ModelEntry:
    if not isinstance(data, Mapping):
        raise CatalogueError(f"{where}: expected a mapping")
    try:
        ckpt, clip = data["checkpoint"], data["clip"]
        checkpoint = CheckpointSpec(
            filename=str(ckpt["filename"]),
            sources=tuple(_source(s, f"{where}.checkpoint.sources") for s in ckpt.get("sources") or ()),
            sha256=(str(ckpt["sha256"]).lower() if ckpt.get("sha256") else None),
        )
        clip_spec = ClipSpec(
            open_clip_name=str(clip["open_clip_name"]),
            pretrained_tag=str(clip["pretrained_tag"]),
            hf_hub=clip.get("hf_hub"),
        )
        entry = ModelEntry(name=name, config=str(data["config"]), checkpoint=checkpoint, clip=clip_spec,
                           description=str(data.get("description", "")))
    except (KeyError, TypeError) as exc:
        raise CatalogueError(f"{where}: missing or malformed {exc}") from None
    if "/" in checkpoint.filename or checkpoint.filename.startswith("."):
        raise CatalogueError(f"{where}.checkpoint.filename {checkpoint.filename!r}: a plain file name is needed")
    return entry


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The catalogue at ``path``, else ``$FCCLIP_WEIGHTS_CATALOGUE``, else the shipped one."""
    path = Path(path or os.environ.get(CATALOGUE_ENV) or DEFAULT_CATALOGUE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogueError(f"cannot read the weights catalogue {path}: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), Mapping) or not data["models"]:
        raise CatalogueError(f"{path}: expected a mapping with a non-empty 'models' mapping")
    models = {str(name): _entry(str(name), entry, f"{path}: models.{name}") for name, entry in data["models"].items()}
    default = str(data.get("default") or next(iter(models)))
    if default not in models:
        raise CatalogueError(f"{path}: default model {default!r} is not in the catalogue")
    return Catalogue(models=models, default=default, path=path)
