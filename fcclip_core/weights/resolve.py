"""Which weights files to load, in the order the node and the CLIP use everywhere.

1. an explicit path (an export, or a checkpoint whose CLIP weights come from the cache);
2. the cache: the single-file export if there is one, else the checkpoint (+ CLIP weights);
3. a download, when the caller allows it (a setting of the node / a CLI flag);
4. otherwise an error, at once and without touching the network, that names the commands.

``load_weights_into`` then puts them into a model: an export is memory-mapped and its tensors
become the parameters (nothing copied), a ``.pth`` goes through ``load_checkpoint``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from fcclip_core.weights.catalogue import Catalogue
from fcclip_core.weights.errors import WeightsFileError, WeightsNotFoundError
from fcclip_core.weights.files import export_metadata, read_tensors
from fcclip_core.weights.store import WeightsStore

if TYPE_CHECKING:
    import torch

    from fcclip_core.checkpoint import LoadReport


@dataclass(frozen=True)
class ResolvedWeights:
    """The files that make up a model's weights, and where they were found."""

    model: str  # catalogue name
    config: str  # model config name (fcclip_core.config.load_model_config)
    path: Path  # the export (.safetensors) or the FC-CLIP checkpoint
    clip: Optional[Path] = None  # open_clip weights completing the checkpoint (None: not needed)
    exported: bool = False
    origin: str = "cache"  # "explicit", "cache" or "download"

    def describe(self) -> str:
        what = "export" if self.exported else "checkpoint"
        extra = f" + CLIP weights {self.clip}" if self.clip else ""
        return f"{self.model} ({self.origin} {what}): {self.path}{extra}"


def resolve_weights(
    model: Optional[str] = None,
    explicit: str | Path | None = None,
    allow_download: bool = False,
    *,
    explicit_clip: str | Path | None = None,
    cache_dir: str | Path | None = None,
    catalogue: Optional[Catalogue] = None,
    progress: bool = True,
) -> ResolvedWeights:
    """The weights to load for ``model`` (a catalogue name; default: the released model).

    Raises ``WeightsNotFoundError`` naming the exact command to run when nothing usable is
    found and downloading is not allowed; ``DownloadError`` when a download fails (offline:
    within seconds); ``WeightsFileError`` for an explicit file that is not what it should be.
    """
    store = WeightsStore(Path(cache_dir) if cache_dir is not None else None, catalogue)
    entry = store.entry(model)
    store.require_config(entry, "load it")
    if explicit is not None and str(explicit) != "":
        return _resolve_explicit(store, entry.name, Path(explicit).expanduser(),
                                 Path(explicit_clip).expanduser() if explicit_clip else None, allow_download, progress)
    status = store.status(entry.name)
    if not status.ready and allow_download:
        status = store.download(entry.name, progress=progress)
        origin = "download"
    else:
        origin = "cache"
    if status.ready:
        return _from_status(status, origin)
    states = ", ".join(f"{role} {f.state}" + (f" ({f.detail})" if f.detail and f.state != "complete" else "")
                       for role, f in status.files.items() if role != "export")
    raise WeightsNotFoundError(f"no weights for model {entry.name!r} in {status.root} ({states}).\n"
                               + store.how_to_get(entry)
                               + "\nOr give the path of a weights file explicitly.")


def _from_status(status, origin: str) -> ResolvedWeights:
    entry, root, files = status.entry, status.root, status.files
    if files["export"].state == "complete":
        return ResolvedWeights(entry.name, entry.config, root / files["export"].name, None, True, origin)
    clip = root / files["clip"].name if status.needs_clip else None
    return ResolvedWeights(entry.name, entry.config, root / files["checkpoint"].name, clip, False, origin)


def _resolve_explicit(store: WeightsStore, model: str, path: Path, clip: Optional[Path], allow_download: bool,
                      progress: bool) -> ResolvedWeights:
    entry = store.entry(model)
    if path.is_dir():
        raise WeightsFileError(f"{path}: a directory; give the weights file (an export .safetensors or a .pth)")
    from fcclip_core.weights.verify import check_checkpoint, check_export

    meta = export_metadata(path)
    if meta is not None:
        check_export(path, entry.config)
        return ResolvedWeights(entry.name, entry.config, path, None, True, "explicit")
    check = check_checkpoint(read_tensors(path), entry.config, where=str(path))
    if not check.needs_clip:
        return ResolvedWeights(entry.name, entry.config, path, None, False, "explicit")
    if clip is None:
        status = store.status(entry.name)
        if status.files["clip"].state != "complete" and allow_download:
            status = store.download(entry.name, only="clip", progress=progress)
        if status.files["clip"].state != "complete":
            raise WeightsNotFoundError(
                f"{path} lacks the CLIP text tower ({len(check.clip_keys_needed)} tensors) and the CLIP weights "
                f"({entry.clip.label}) are not in {status.root}. Get them with:\n"
                f"    {store.command('download', entry.name, '--only', 'clip')}\n"
                f"or, fetched elsewhere: {store.command('import', 'FILE', '--model', entry.name)}")
        clip = status.root / status.files["clip"].name
    return ResolvedWeights(entry.name, entry.config, path, clip, False, "explicit")


def load_weights_into(model: "torch.nn.Module", resolved: ResolvedWeights) -> "LoadReport":
    """Fill ``model`` (built on the meta device, or a regular one) from ``resolved``.

    The tensors are assigned, not copied: from an export they stay memory-mapped views of the
    file (pages are read on first use and shared with the page cache), from a zip ``.pth`` the
    same through ``torch.load(mmap=True)``. Raises ``WeightsFileError`` on any key or shape problem.
    """
    from fcclip_core.checkpoint import CheckpointError, load_checkpoint
    from fcclip_core.weights.verify import with_clip_prefix

    try:
        clip = with_clip_prefix(read_tensors(resolved.clip)) if resolved.clip is not None else None
        return load_checkpoint(model, read_tensors(resolved.path), clip, strict=True, config_name=resolved.config)
    except CheckpointError as exc:
        raise WeightsFileError(f"{resolved.path}: {exc}") from None
