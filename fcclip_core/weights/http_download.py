"""Resumable HTTP(S) download of one file into a ``.part`` file (urllib, Range requests).

The bytes go to ``<name>.part``; ``<name>.part.json`` keeps the URL and the server's validators
(ETag / Last-Modified, total size), so a later call resumes where the last one stopped with
``Range: bytes=<part size>-`` and ``If-Range`` (a changed file on the server restarts from zero).
The caller checks the finished ``.part`` and only then gives it its final name.
"""
from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import Any, Optional

from fcclip_core.weights.errors import DownloadError

USER_AGENT = "fcclip_ros-weights/1"
CHUNK_SIZE = 1 << 20
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def check_reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds when the host of ``url`` cannot be reached.

    Name resolution has no timeout of its own in the socket API, so the whole probe runs in a
    daemon thread that is abandoned when it takes too long: offline, nothing hangs.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: dict[str, BaseException] = {}

    def probe() -> None:
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                pass
        except BaseException as exc:  # reported to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=probe, name="fcclip-weights-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if thread.is_alive():
        raise DownloadError(f"cannot reach {parts.hostname}:{port} (no answer within {timeout:.0f} s; offline?)")
    if "error" in outcome:
        raise DownloadError(f"cannot reach {parts.hostname}:{port} ({outcome['error']}; offline?)")


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    path.write_text(json.dumps(state), encoding="utf-8")


def _progress_bar(total: Optional[int], initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, disable=not enabled, dynamic_ncols=True)


class _Restart(Exception):
    """The server cannot continue the partial file: start again from byte 0."""


def fetch_url(url: str, part: Path, *, progress: bool = True, desc: Optional[str] = None,
              read_timeout: float = READ_TIMEOUT_S, retries: int = 3, retry_wait_s: float = 1.0,
              resume_key: Optional[str] = None) -> Path:
    """Download ``url`` into ``part`` (resuming it) and return it once the server sent every byte.

    A broken transfer is resumed up to ``retries`` times in a row without new bytes; after that
    a :class:`DownloadError` leaves the ``.part`` (and its resume data) for the next call.
    ``resume_key`` names the content when the URL changes between calls (signed CDN links): a
    ``.part`` is resumed only for the same key (by default the URL).
    """
    part = Path(part)
    part.parent.mkdir(parents=True, exist_ok=True)
    state_path = part.with_name(part.name + ".json")
    state = _read_state(state_path)
    key = resume_key or url
    if state.get("key") != key or not part.exists():
        part.unlink(missing_ok=True)
        state = {"key": key}
        _write_state(state_path, state)
    desc = desc or part.name.removesuffix(".part")
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            if _transfer(url, part, state, state_path, desc=desc, progress=progress, read_timeout=read_timeout):
                return part
        except _Restart:
            part.unlink(missing_ok=True)
            state = {"key": key}
            _write_state(state_path, state)
            continue
        except DownloadError:
            raise
        except (OSError, HTTPException, urllib.error.URLError) as exc:
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1
            if failures > retries:
                raise DownloadError(
                    f"download of {url} failed: {exc}; {after} bytes kept in {part} (run the same command "
                    "again to resume)") from None
            time.sleep(retry_wait_s)
            continue
        # The body ended early without an error: resume from where it stopped.
        after = part.stat().st_size if part.exists() else 0
        failures = 0 if after > before else failures + 1
        if failures > retries:
            raise DownloadError(f"download of {url} keeps stopping at {after} bytes; kept in {part}")


def _transfer(url: str, part: Path, state: dict[str, Any], state_path: Path, *, desc: str, progress: bool,
              read_timeout: float) -> bool:
    """One request. True when ``part`` holds the whole file, False when the body ended early."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = state.get("etag") or state.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=read_timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            if state.get("total") == offset:
                return True  # the part file is already whole
            raise _Restart() from None
        if 500 <= exc.code < 600 or exc.code in (408, 429):
            raise urllib.error.URLError(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    with response:
        status = response.status
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise _Restart()
            total = None if match.group(3) == "*" else int(match.group(3))
        elif status == 200:
            if offset:
                part.unlink(missing_ok=True)  # the server sends the whole file (no Range support / changed)
                offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None and length.isdigit() else None
        else:
            raise DownloadError(f"download of {url} failed: unexpected HTTP status {status}")
        state.update(total=total, etag=response.headers.get("ETag"),
                     last_modified=response.headers.get("Last-Modified"))
        _write_state(state_path, state)
        with open(part, "ab") as out, _progress_bar(total, offset, desc, progress) as bar:
            while True:
                block = response.read(CHUNK_SIZE)
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
            out.flush()
    size = part.stat().st_size
    if total is None:
        state["total"] = size
        _write_state(state_path, state)
        return True
    if size > total:
        raise _Restart()
    return size == total
