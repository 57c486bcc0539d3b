"""A loopback HTTP server standing in for Google Drive and the Hugging Face Hub, and tiny weights.

The server serves in-memory files with Range support and Hugging Face's resolve endpoint
(``/<org>/<repo>/resolve/<revision>/<file>`` with the headers ``hf_hub_download`` relies on);
it can cut a transfer midway and then stop answering, like a dropped connection. The weights are
the shared tiny fixture (the real FC-CLIP code path, small sizes), split like the released files:
an FC-CLIP checkpoint without the CLIP text tower, and open_clip-layout CLIP weights.
"""
from __future__ import annotations

import hashlib
import io
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pytest
import torch
import yaml

CLIP_PREFIX = "backbone.clip_model."
# What the released fcclip_cocopan.pth lacks (bytedance/fc-clip issue #14): the CLIP text tower.
TEXT_TOWER_PREFIXES = ("token_embedding.", "ln_final.", "transformer.resblocks.")
HF_COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_CLIP_REPO = "fcclip-test/tiny-clip"
CHECKPOINT_NAME = "fcclip_tiny.pth"


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    cut_after: Optional[int] = None  # send only this many body bytes of the next GET, then drop the connection
    dead_after_cut: bool = True  # after a cut, answer nothing but 503 (the network went away)
    dead: bool = False
    ignore_range: bool = False
    etag_override: Optional[str] = None  # announce this ETag instead of the body's sha256
    requests: list[tuple[str, str, Optional[str]]] = field(default_factory=list)  # method, path, Range


class _Handler(BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        state = self.state
        state.requests.append((self.command, self.path, self.headers.get("Range")))
        if state.dead:
            self.send_error(503, "gone")
            return
        body = state.files.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            if "/resolve/" in self.path:
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Repo-Commit", HF_COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = state.etag_override or '"%s"' % hashlib.sha256(body).hexdigest()
        start = 0
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and not state.ignore_range and (if_range is None or if_range == etag):
            start = int(wanted.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if "/resolve/" in self.path:
            self.send_header("X-Repo-Commit", HF_COMMIT)
        self.end_headers()
        if head:
            return
        payload = body[start:]
        if state.cut_after is not None:
            payload = payload[: state.cut_after]
            state.cut_after = None
            state.dead = state.dead_after_cut
            self.wfile.write(payload)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)


class LoopbackServer:
    def __init__(self) -> None:
        self.state = ServerState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def ranges(self, path: str) -> list[Optional[str]]:
        return [r for m, p, r in self.state.requests if m == "GET" and p == path]


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def to_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class TinyWeights:
    full: dict[str, torch.Tensor]  # the fixture's whole state dict (official key layout)
    checkpoint: dict[str, torch.Tensor]  # released-like: no text tower
    clip: dict[str, torch.Tensor]  # open_clip layout (no backbone.clip_model. prefix), whole CLIP model
    removed: tuple[str, ...]  # the full keys the checkpoint lacks

    def checkpoint_bytes(self) -> bytes:
        return to_bytes({"model": self.checkpoint, "iteration": 368749})

    def clip_bytes(self) -> bytes:
        from safetensors.torch import save

        return save({k: v.contiguous() for k, v in self.clip.items()})


@pytest.fixture(scope="session")
def tiny_weights(reference_root: Path) -> TinyWeights:
    full = torch.load(reference_root / "tiny" / "weights.pth", weights_only=True)
    removed = tuple(k for k in full if k.startswith(tuple(CLIP_PREFIX + p for p in TEXT_TOWER_PREFIXES)))
    checkpoint = {k: v for k, v in full.items() if k not in removed}
    clip = {k[len(CLIP_PREFIX):]: v for k, v in full.items() if k.startswith(CLIP_PREFIX)}
    return TinyWeights(full=full, checkpoint=checkpoint, clip=clip, removed=removed)


@pytest.fixture(scope="session")
def rn_tiny_checkpoint(reference_root: Path) -> dict[str, torch.Tensor]:
    """Another model's checkpoint (the ResNet tiny fixture)."""
    return torch.load(reference_root / "rn_tiny" / "weights.pth", weights_only=True)


@pytest.fixture
def server():
    srv = LoopbackServer()
    yield srv
    srv.close()


def write_catalogue(path: Path, checkpoint_sha256: Optional[str] = None) -> Path:
    """A catalogue with the tiny fixture model (``tiny``, the default) and one whose config is not shipped."""
    data = {
        "format_version": 1,
        "default": "tiny",
        "models": {
            "tiny": {
                "description": "tiny fixture architecture",
                "config": "fixture_tiny",
                "checkpoint": {"filename": CHECKPOINT_NAME, "sources": [{"url": "http://127.0.0.1:9/unused"}],
                               "sha256": checkpoint_sha256},
                "clip": {"open_clip_name": "convnext_fcref_tiny_d", "pretrained_tag": "fixture",
                         "hf_hub": TINY_CLIP_REPO + "/"},
            },
            "later": {
                "description": "a model whose config is not shipped",
                "config": "not_shipped_yet",
                "checkpoint": {"filename": "later.pth", "sources": [{"gdrive": "abc"}]},
                "clip": {"open_clip_name": "RN50", "pretrained_tag": "openai"},
            },
        },
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def weights_env(tmp_path: Path, monkeypatch, server: LoopbackServer, tiny_weights: TinyWeights):
    """Cache, catalogue, checkpoint mirror and Hugging Face endpoint, all local; files published."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FCCLIP_WEIGHTS_DIR", str(cache))
    monkeypatch.setenv("FCCLIP_WEIGHTS_CATALOGUE", str(write_catalogue(tmp_path / "catalogue.yaml")))
    monkeypatch.setenv("FCCLIP_WEIGHTS_BASE_URL", server.url)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    server.state.files[f"/{CHECKPOINT_NAME}"] = tiny_weights.checkpoint_bytes()
    server.state.files[f"/{TINY_CLIP_REPO}/resolve/main/open_clip_model.safetensors"] = tiny_weights.clip_bytes()
    return cache
