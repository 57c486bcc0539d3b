"""The operations behind ``fcclip-weights``: download, import, export, status.

Every file takes the same path into the cache: it is written under ``.partial/``, read and
checked against the model config (and against the catalogue's sha256 when one is known), and
only then renamed to its final name and recorded in the model's manifest. A failed check
deletes the staged file and says what is wrong with it.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from fcclip_core.weights.cache import (
    FileRecord,
    ModelDir,
    copy_to_part,
    default_cache_dir,
    publish,
    remove_quietly,
    sha256_file,
)
from fcclip_core.weights.catalogue import Catalogue, ModelEntry, load_catalogue
from fcclip_core.weights.errors import DownloadError, WeightsError, WeightsFileError
from fcclip_core.weights.files import export_metadata, read_tensors
from fcclip_core.weights.sources import clip_browser_urls, clip_candidate_files, fetch_checkpoint_source, fetch_clip

ONLY_CHOICES = ("checkpoint", "clip")


def _checks():
    """The structural checks build models (torch, open_clip): imported when a file is checked,
    so that `fcclip-weights list` and `path` start in a fraction of a second."""
    from fcclip_core.weights import verify

    return verify


def _export(*args, **kwargs):
    from fcclip_core.weights.export import export_weights

    return export_weights(*args, **kwargs)


@dataclass(frozen=True)
class FileState:
    role: str
    state: str  # "complete", "partial", "changed", "corrupt" or "missing"
    name: Optional[str] = None
    size: Optional[int] = None
    detail: str = ""


@dataclass(frozen=True)
class ModelStatus:
    entry: ModelEntry
    root: Path
    files: dict[str, FileState] = field(default_factory=dict)
    needs_clip: bool = True

    @property
    def ready(self) -> bool:
        """Loadable from the cache: the export, or the checkpoint (+ CLIP weights when it needs them)."""
        if self.files["export"].state == "complete":
            return True
        return self.files["checkpoint"].state == "complete" and (
            not self.needs_clip or self.files["clip"].state == "complete")


def clip_filename(entry: ModelEntry, downloaded_name: str) -> str:
    """The cache name of the open_clip weights: which CLIP, and the file's own format."""
    suffix = ".safetensors" if downloaded_name.endswith(".safetensors") else Path(downloaded_name).suffix or ".bin"
    return f"open_clip_{entry.clip.open_clip_name}-{entry.clip.pretrained_tag}{suffix}"


class WeightsStore:
    """The weights cache of one user (or robot), with the catalogue that names its models."""

    def __init__(self, cache_dir: Optional[Path] = None, catalogue: Optional[Catalogue] = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.catalogue = catalogue or load_catalogue()

    def entry(self, model: Optional[str]) -> ModelEntry:
        return self.catalogue.get(model)

    def model_dir(self, entry: ModelEntry) -> ModelDir:
        return ModelDir(self.cache_dir, entry.name)

    # ------------------------------------------------------------------ messages

    def command(self, *args: str) -> str:
        """A command line for the user, carrying ``--cache-dir`` when this store is not the default one."""
        words = ["fcclip-weights"]
        if self.cache_dir.expanduser().resolve() != default_cache_dir().expanduser().resolve():
            words += ["--cache-dir", str(self.cache_dir)]
        return shlex.join(words + list(args))

    def how_to_get(self, entry: ModelEntry, *, failed: bool = False) -> str:
        """The exact commands: download here, or fetch elsewhere and import (air-gapped).

        ``failed``: after a failed download, whose partial files the same command resumes.
        """
        sources = entry.checkpoint_sources()
        ckpt_url = sources[0].browser_url if sources else "(no source in the catalogue)"
        clip_urls = clip_browser_urls(entry.clip)
        return "\n".join([
            "Once online again, resume with:" if failed else "Get them with:",
            f"    {self.command('download', entry.name)}",
            "Without internet on this machine (air-gapped): on another machine fetch",
            f"    {ckpt_url}   (the FC-CLIP checkpoint, {entry.checkpoint.filename})",
            f"    {clip_urls[0]}   (the CLIP weights; or {clip_urls[-1].rsplit('/', 1)[-1]})",
            "copy both here and run",
            f"    {self.command('import', entry.checkpoint.filename, clip_urls[0].rsplit('/', 1)[-1], '--model', entry.name)}",
        ])

    def require_config(self, entry: ModelEntry, action: str) -> None:
        if not entry.config_available:
            raise WeightsError(f"model {entry.name!r}: cannot {action} yet: its model config {entry.config!r} is not "
                               "shipped in this release (the checks need it)")

    # ------------------------------------------------------------------ status

    def status(self, model: Optional[str] = None, *, verify: bool = False) -> ModelStatus:
        entry = self.entry(model)
        md = self.model_dir(entry)
        records = md.read_manifest()
        files = {}
        for role in ("checkpoint", "clip", "export"):
            files[role] = self._file_state(md, role, records.get(role), verify)
        if files["checkpoint"].state == "missing":
            files["checkpoint"] = self._partial_checkpoint(md, entry) or files["checkpoint"]
        if files["clip"].state == "missing":
            files["clip"] = self._partial_clip(md, entry) or files["clip"]
        ckpt = records.get("checkpoint")
        needs_clip = ckpt.needs_clip if ckpt is not None else True
        return ModelStatus(entry=entry, root=md.root, files=files, needs_clip=needs_clip)

    @staticmethod
    def _file_state(md: ModelDir, role: str, rec: Optional[FileRecord], verify: bool) -> FileState:
        if rec is None:
            return FileState(role, "missing")
        path = md.path(rec.name)
        if not path.is_file():
            return FileState(role, "missing", rec.name, detail="listed in the manifest but gone")
        stat = path.stat()
        if stat.st_size != rec.size or stat.st_mtime_ns != rec.mtime_ns:
            return FileState(role, "changed", rec.name, stat.st_size, "changed since it was checked")
        if verify and sha256_file(path) != rec.sha256:
            return FileState(role, "corrupt", rec.name, stat.st_size, "sha256 differs from the one recorded")
        return FileState(role, "complete", rec.name, rec.size, rec.origin)

    @staticmethod
    def _partial_checkpoint(md: ModelDir, entry: ModelEntry) -> Optional[FileState]:
        """A checkpoint download under way: our ``.part`` or gdown's ``<name>.part<random>.part``."""
        name = entry.checkpoint.filename
        part = md.part_path(name)
        candidates = [part] if part.exists() else sorted(md.partial_dir.glob(f"{name}.part*.part"))
        if not candidates:
            return None
        size = candidates[0].stat().st_size
        total = None
        try:
            total = json.loads(part.with_name(part.name + ".json").read_text(encoding="utf-8")).get("total")
        except (OSError, ValueError):
            pass
        detail = f"{size} of {total} bytes" if total else f"{size} bytes"
        return FileState("checkpoint", "partial", name, size, detail + "; the same download command resumes it")

    @staticmethod
    def _partial_clip(md: ModelDir, entry: ModelEntry) -> Optional[FileState]:
        """A CLIP download under way: ``<Hub file name>.part``."""
        for name in clip_candidate_files(entry.clip.hub_location()[1]):
            part = md.part_path(name)
            if part.exists():
                size = part.stat().st_size
                return FileState("clip", "partial", name, size, f"{size} bytes; the same download command resumes it")
        return None

    # ------------------------------------------------------------------ download

    def download(self, model: Optional[str] = None, *, only: Optional[str] = None, progress: bool = True,
                 export: bool = False) -> ModelStatus:
        """Fetch what the cache lacks of ``model`` (checkpoint, then its CLIP weights); idempotent."""
        entry = self.entry(model)
        self.require_config(entry, "download it")
        if only not in (None, *ONLY_CHOICES):
            raise ValueError(f"only must be one of {ONLY_CHOICES}, got {only!r}")
        md = self.model_dir(entry)
        with md.lock():
            if only in (None, "checkpoint") and md.complete("checkpoint") is None:
                self._download_checkpoint(entry, md, progress)
            ckpt = md.complete("checkpoint")
            if only in (None, "clip") and (ckpt is None or ckpt.needs_clip) and md.complete("clip") is None:
                self._download_clip(entry, md, progress)
            if export and md.complete("export") is None:
                self._export_locked(entry, md)
        return self.status(entry.name)

    def _download_checkpoint(self, entry: ModelEntry, md: ModelDir, progress: bool) -> None:
        sources = entry.checkpoint_sources()
        if not sources:
            raise DownloadError(f"model {entry.name!r} has no checkpoint source in {self.catalogue.path}")
        part = md.part_path(entry.checkpoint.filename)
        failures = []
        for source in sources:
            try:
                fetch_checkpoint_source(source, part, progress=progress)
                break
            except DownloadError as exc:
                failures.append(f"  {source}: {exc}")
        else:
            raise DownloadError(f"could not download the checkpoint of {entry.name!r}:\n" + "\n".join(failures)
                                + "\n" + self.how_to_get(entry, failed=True))
        self._admit_checkpoint(entry, md, part, origin=str(source))

    def _download_clip(self, entry: ModelEntry, md: ModelDir, progress: bool) -> None:
        try:
            fetched = fetch_clip(entry.clip, md.partial_dir, progress=progress)
        except DownloadError as exc:
            raise DownloadError(f"could not download the CLIP weights of {entry.name!r} ({entry.clip.label}): "
                                f"{exc}\n{self.how_to_get(entry, failed=True)}") from None
        self._admit_clip(entry, md, fetched.path, origin=fetched.origin, expected_sha256=fetched.sha256)

    # ------------------------------------------------------------------ admitting files

    @staticmethod
    def _hash(staged: Path, origin: str, expected: Optional[str]) -> str:
        sha = sha256_file(staged)
        if expected and sha != expected:
            raise WeightsFileError(f"{origin}: sha256 {sha} differs from the published {expected} "
                                   "(damaged or different file)")
        return sha

    def _admit_checkpoint(self, entry: ModelEntry, md: ModelDir, staged: Path, *, origin: str) -> FileRecord:
        """Check a staged checkpoint, give it its final name, record it; a bad one is deleted."""
        resume_data = staged.with_name(staged.name + ".json")
        try:
            sha = self._hash(staged, origin, entry.checkpoint.sha256)
            check = _checks().check_checkpoint(read_tensors(staged), entry.config, where=origin)
            publish(staged, md.path(entry.checkpoint.filename))
        except WeightsError:
            remove_quietly(staged, resume_data)
            raise
        remove_quietly(resume_data)
        record = md.record("checkpoint", entry.checkpoint.filename, sha256=sha, origin=origin,
                           needs_clip=check.needs_clip)
        self._drop_stale_export(md)
        return record

    def _admit_clip(self, entry: ModelEntry, md: ModelDir, staged: Path, *, origin: str,
                    source_name: Optional[str] = None, expected_sha256: Optional[str] = None) -> FileRecord:
        """The same for open_clip weights, checked against the keys the cached checkpoint lacks."""
        name = clip_filename(entry, source_name or staged.name.removesuffix(".part"))
        resume_data = staged.with_name(staged.name + ".json")
        try:
            sha = self._hash(staged, origin, expected_sha256)
            _checks().check_clip(read_tensors(staged), entry.config, where=origin,
                                 needed=self._clip_keys_needed(entry, md))
            publish(staged, md.path(name))
        except WeightsError:
            remove_quietly(staged, resume_data)
            raise
        remove_quietly(resume_data)
        record = md.record("clip", name, sha256=sha, origin=origin)
        self._drop_stale_export(md)
        return record

    @staticmethod
    def _drop_stale_export(md: ModelDir) -> None:
        """An export made from another checkpoint (or CLIP file) than the one just cached would
        shadow it (the export is preferred when loading): it is deleted."""
        records = md.read_manifest()
        export = records.get("export")
        if export is None:
            return
        try:
            sources = json.loads((export_metadata(md.path(export.name)) or {}).get("sources", "{}"))
        except (WeightsError, ValueError):
            sources = {}
        made_from = {role: info.get("sha256") for role, info in sources.items()}
        if any(role in made_from and made_from[role] != records[role].sha256 for role in ("checkpoint", "clip")
               if role in records):
            remove_quietly(md.path(export.name))
            md.forget("export")

    @staticmethod
    def _clip_keys_needed(entry: ModelEntry, md: ModelDir) -> Optional[tuple[str, ...]]:
        """The exact CLIP keys the cached checkpoint lacks (None: no checkpoint yet, check the text tower)."""
        rec = md.complete("checkpoint")
        if rec is None:
            return None
        return _checks().check_checkpoint(read_tensors(md.path(rec.name)), entry.config, where=rec.name).clip_keys_needed

    # ------------------------------------------------------------------ import

    def import_files(self, paths: Iterable[Path], model: Optional[str] = None) -> list[FileRecord]:
        """Bring files fetched by hand into the cache: each is recognised, copied, checked, recorded.

        Checkpoints are imported before CLIP weights, so the CLIP file is checked against exactly
        the keys that checkpoint lacks. The original files are left where they are.
        """
        entry = self.entry(model)
        self.require_config(entry, "import files for it")
        md = self.model_dir(entry)
        classified = []
        for path in paths:
            path = Path(path).expanduser()
            if export_metadata(path) is not None:
                classified.append(("export", path))
                continue
            kind = _checks().kind_of(read_tensors(path))
            if kind == "unknown":
                raise WeightsFileError(f"{path}: neither an FC-CLIP checkpoint nor open_clip CLIP weights")
            classified.append((kind, path))
        order = {"checkpoint": 0, "clip": 1, "export": 2}
        records = []
        with md.lock():
            for kind, path in sorted(classified, key=lambda item: order[item[0]]):
                origin = f"import:{path.resolve()}"
                if kind == "export":
                    records.append(self._import_export(entry, md, path, origin))
                    continue
                staged = md.partial_dir / f"{path.name}.import.part"
                copy_to_part(path, staged)
                if kind == "checkpoint":
                    records.append(self._admit_checkpoint(entry, md, staged, origin=origin))
                else:
                    records.append(self._admit_clip(entry, md, staged, origin=origin, source_name=path.name))
        return records

    def _import_export(self, entry: ModelEntry, md: ModelDir, path: Path, origin: str) -> FileRecord:
        _checks().check_export(path, entry.config)
        part = md.part_path(entry.export_filename)
        sha = copy_to_part(path, part)
        _checks().check_export(part, entry.config)
        publish(part, md.path(entry.export_filename))
        return md.record("export", entry.export_filename, sha256=sha, origin=origin, needs_clip=False)

    # ------------------------------------------------------------------ export

    def export(self, model: Optional[str] = None, *, output: Optional[Path] = None,
               checkpoint: Optional[Path] = None, clip: Optional[Path] = None) -> Path:
        """Write the single-file export and return its path.

        From the cache, or from ``checkpoint`` (+ ``clip``) when given; into the cache (recorded,
        and then preferred by ``resolve_weights``) unless ``output`` names another file.
        """
        entry = self.entry(model)
        self.require_config(entry, "export it")
        md = self.model_dir(entry)
        if checkpoint is not None and output is not None:
            _export(entry.config, Path(checkpoint), Path(clip) if clip else None, Path(output), model_name=entry.name)
            return Path(output)
        if checkpoint is not None:
            self.import_files([p for p in (checkpoint, clip) if p is not None], entry.name)
        with md.lock():
            if output is None:
                return self._export_locked(entry, md)
            self._export_cached(entry, md, Path(output))
            return Path(output)

    def _cached_pair(self, entry: ModelEntry, md: ModelDir) -> tuple[FileRecord, Optional[FileRecord]]:
        ckpt = md.complete("checkpoint")
        clip = md.complete("clip")
        if ckpt is None or (ckpt.needs_clip and clip is None):
            lacking = "the checkpoint" if ckpt is None else "the CLIP weights"
            raise WeightsError(f"cannot export {entry.name!r}: {lacking} are not in {md.root}.\n"
                               + self.how_to_get(entry))
        return ckpt, (clip if ckpt.needs_clip else None)

    def _export_cached(self, entry: ModelEntry, md: ModelDir, target: Path, part: Optional[Path] = None) -> None:
        """Export the cached checkpoint (+ CLIP weights) to ``target``; their hashes come from the manifest."""
        ckpt, clip = self._cached_pair(entry, md)
        hashes = {"checkpoint": ckpt.sha256, **({"clip": clip.sha256} if clip else {})}
        _export(entry.config, md.path(ckpt.name), md.path(clip.name) if clip else None, target,
                model_name=entry.name, source_hashes=hashes, part=part)

    def _export_locked(self, entry: ModelEntry, md: ModelDir) -> Path:
        target = md.path(entry.export_filename)
        self._export_cached(entry, md, target, part=md.part_path(entry.export_filename))
        md.record("export", entry.export_filename, sha256=sha256_file(target), origin="export", needs_clip=False)
        return target
