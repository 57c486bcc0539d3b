"""Fetching from the three kinds of source: Google Drive (gdown), plain URLs, the Hugging Face Hub.

Every fetch first checks, within seconds, that the host answers at all, so an offline robot
gets an error instead of a hang; ``HF_HUB_OFFLINE=1`` stops Hub downloads before any request.
Results land in the model directory's ``.partial/`` folder; the caller verifies and renames.
"""
from __future__ import annotations

import os
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


def fetch_checkpoint_source(source: Source, part: Path, *, progress: bool) -> Path:
    """Download one checkpoint source into ``part`` (resuming it); returns ``part`` once whole."""
    if source.kind == "url":
        check_reachable(source.location, CONNECT_TIMEOUT_S)
        return fetch_url(source.location, part, progress=progress, desc=part.name.removesuffix(".part"))
    if source.kind == "gdrive":
        return _fetch_gdrive(source.location, part, progress=progress)
    raise DownloadError(f"unknown source kind {source.kind!r}")


def _fetch_gdrive(file_id: str, part: Path, *, progress: bool) -> Path:
    """gdown does the Google Drive dance (confirmation pages, cookies) and resumes its own
    ``<part>XXXXXXXX.part`` file; it renames that to ``part`` when the transfer is whole."""
    check_reachable(GDRIVE_PROBE_URL, CONNECT_TIMEOUT_S)
    import gdown
    from gdown.exceptions import FileURLRetrievalError

    marker = part.with_name(part.name + ".json")
    if part.exists() and not marker.exists():
        part.unlink()  # a plain-URL partial of another source: gdown would take it for finished
    try:
        gdown.download(id=file_id, output=str(part), quiet=not progress, resume=True,
                       timeout=(CONNECT_TIMEOUT_S, 60.0), retries=3)
    except FileURLRetrievalError as exc:
        raise DownloadError(f"Google Drive refused file {file_id} ({str(exc).splitlines()[0]}); Drive limits "
                            "downloads of popular files per day") from None
    except Exception as exc:  # gdown and requests errors: network, partial transfer
        raise DownloadError(f"Google Drive download of {file_id} failed: {type(exc).__name__}: {exc}") from None
    marker.write_text('{"url": "gdrive:%s", "complete": true}' % file_id, encoding="utf-8")
    return part


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


def fetch_clip(spec: ClipSpec, staging: Path, *, progress: bool) -> tuple[Path, str]:
    """Download the open_clip weights with ``hf_hub_download`` into ``staging``.

    Returns the downloaded file and its origin (``hf:<repo>/<file>``). huggingface_hub resumes
    its own ``.incomplete`` file in ``staging/.cache`` and only then names the file.
    """
    repo_id, filename = spec.hub_location()
    if hf_offline():
        raise DownloadError("Hugging Face Hub downloads are off (HF_HUB_OFFLINE is set)")
    endpoint = hf_endpoint()
    check_reachable(endpoint, CONNECT_TIMEOUT_S)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    tried = []
    try:
        for name in clip_candidate_files(filename):
            try:
                path = hf_hub_download(repo_id=repo_id, filename=name, local_dir=str(staging), endpoint=endpoint,
                                       etag_timeout=CONNECT_TIMEOUT_S)
            except RemoteEntryNotFoundError:
                tried.append(name)
                continue
            except (HfHubHTTPError, OSError, ValueError) as exc:
                raise DownloadError(f"Hugging Face download of {repo_id}/{name} failed: {exc}") from None
            except Exception as exc:  # httpx transport errors and the like
                raise DownloadError(f"Hugging Face download of {repo_id}/{name} failed: {type(exc).__name__}: "
                                    f"{exc}") from None
            return Path(path), f"hf:{repo_id}/{name}"
    finally:
        if not progress and not was_disabled:
            enable_progress_bars()
    raise DownloadError(f"{endpoint}/{repo_id} has none of {tried}")
