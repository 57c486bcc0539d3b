"""Fetching from the three kinds of source: Google Drive (gdown), plain URLs, the Hugging Face Hub.

Every fetch first checks, within seconds, that the host answers at all, so an offline robot
gets an error instead of a hang; ``HF_HUB_OFFLINE=1`` stops Hub downloads before any request.
Results land in the model directory's ``.partial/`` folder as ``.part`` files that a later call
resumes; the caller verifies them and only then gives them their final names.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fcclip_core.weights.catalogue import ClipSpec, Source
from fcclip_core.weights.errors import DownloadError
from fcclip_core.weights.http_download import CONNECT_TIMEOUT_S, check_reachable, fetch_url

GDRIVE_PROBE_URL = "https://drive.google.com"
# open_clip's file names in a Hub repo (open_clip.constants; test_sources checks they agree),
# spelled out so that error messages need no open_clip import.
OPEN_CLIP_SAFE_WEIGHTS = "open_clip_model.safetensors"
OPEN_CLIP_PICKLE_WEIGHTS = "open_clip_pytorch_model.bin"
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def fetch_checkpoint_source(source: Source, part: Path, *, progress: bool) -> Path:
    """Download one checkpoint source into ``part`` (resuming it); returns ``part`` once whole."""
    if source.kind == "url":
        check_reachable(source.location, CONNECT_TIMEOUT_S)
        return fetch_url(source.location, part, progress=progress, desc=part.name.removesuffix(".part"))
    if source.kind == "gdrive":
        return _fetch_gdrive(source.location, part, progress=progress)
    raise DownloadError(f"unknown source kind {source.kind!r}")


def _fetch_gdrive(file_id: str, part: Path, *, progress: bool) -> Path:
    check_reachable(GDRIVE_PROBE_URL, CONNECT_TIMEOUT_S)
    return gdown_to_part(part, progress=progress, file_id=file_id)


def gdown_to_part(part: Path, *, progress: bool, file_id: Optional[str] = None, url: Optional[str] = None,
                  retries: int = 3) -> Path:
    """Download with gdown (a Google Drive ``file_id``, or any ``url``) into ``part``.

    gdown does the Google Drive dance (confirmation pages, cookies) and resumes its own
    ``<part><random>.part`` file, which it renames to ``part`` once the transfer is whole; a marker
    beside ``part`` says which file it is, so a partial of another source is never taken for it.
    """
    import gdown
    from gdown.exceptions import FileURLRetrievalError

    marker = part.with_name(part.name + ".json")
    key = f"gdrive:{file_id}" if file_id else url
    if part.exists() and _resume_key(marker) != key:
        part.unlink()  # a plain-URL partial (or another file): gdown would take it for finished
    marker.write_text(json.dumps({"key": key}), encoding="utf-8")
    what = f"Google Drive file {file_id}" if file_id else url
    try:
        gdown.download(url=url, id=file_id, output=str(part), quiet=not progress, resume=True,
                       timeout=(CONNECT_TIMEOUT_S, 60.0), retries=retries)
    except FileURLRetrievalError as exc:
        raise DownloadError(f"Google Drive refused {what} ({str(exc).splitlines()[0]}); Drive limits "
                            "downloads of popular files per day") from None
    except Exception as exc:  # gdown and requests errors: network, partial transfer
        raise DownloadError(f"download of {what} failed: {type(exc).__name__}: {exc}; the received bytes are "
                            "kept (run the same command again to resume)") from None
    marker.write_text(json.dumps({"key": key, "complete": True}), encoding="utf-8")
    return part


def _resume_key(marker: Path) -> Optional[str]:
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def hf_offline() -> bool:
    """Hugging Face's own offline switch, read now (not when huggingface_hub was imported)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")


def clip_candidate_files(filename: Optional[str]) -> list[str]:
    """open_clip's choice of file in a Hub repo: safetensors when there is one, else the pickle."""
    if filename is None:
        return [OPEN_CLIP_SAFE_WEIGHTS, OPEN_CLIP_PICKLE_WEIGHTS]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def clip_browser_urls(spec: ClipSpec) -> list[str]:
    repo_id, filename = spec.hub_location()
    return [f"{hf_endpoint()}/{repo_id}/resolve/main/{name}" for name in clip_candidate_files(filename)]


@dataclass(frozen=True)
class Fetched:
    path: Path  # the finished .part file
    origin: str  # where it came from, for the manifest
    sha256: Optional[str] = None  # what its content hash must be, when the source says


def fetch_clip(spec: ClipSpec, partial_dir: Path, *, progress: bool) -> Fetched:
    """Download the open_clip weights from the Hugging Face Hub into ``partial_dir``.

    huggingface_hub speaks the Hub protocol (``hf_hub_url`` and ``get_hf_file_metadata``:
    endpoint, revision, redirects to the storage CDN, tokens, ETag); the bytes come through our
    resumable downloader, keyed on the file's ETag, because huggingface_hub deletes a partial file
    when its process ends. The ETag of a large Hub file is its sha256, which the caller checks.
    """
    repo_id, filename = spec.hub_location()
    if hf_offline():
        raise DownloadError("Hugging Face Hub downloads are off (HF_HUB_OFFLINE is set)")
    endpoint = hf_endpoint()
    check_reachable(endpoint, CONNECT_TIMEOUT_S)
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import RemoteEntryNotFoundError

    tried = []
    for name in clip_candidate_files(filename):
        url = hf_hub_url(repo_id, name, endpoint=endpoint)
        try:
            meta = get_hf_file_metadata(url, timeout=CONNECT_TIMEOUT_S, endpoint=endpoint)
        except RemoteEntryNotFoundError:
            tried.append(name)
            continue
        except Exception as exc:  # HfHubHTTPError, httpx transport errors: say which and why
            raise DownloadError(f"Hugging Face Hub lookup of {repo_id}/{name} failed: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        location = meta.location or url
        if location != url:
            check_reachable(location, CONNECT_TIMEOUT_S)
        part = fetch_url(location, partial_dir / f"{name}.part", progress=progress, desc=name,
                         resume_key=f"hf:{repo_id}/{name}@{meta.etag}")
        sha = meta.etag if meta.etag and _SHA256.fullmatch(meta.etag) else None
        revision = f"@{meta.commit_hash[:12]}" if meta.commit_hash else ""
        return Fetched(part, f"hf:{repo_id}/{name}{revision}", sha)
    raise DownloadError(f"{endpoint}/{repo_id} has none of {tried}")
