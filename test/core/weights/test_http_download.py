"""The resumable HTTP downloader against the loopback server: whole, cut, resumed, changed."""
from __future__ import annotations

import os
import time

import pytest

from fcclip_core.weights.errors import DownloadError
from fcclip_core.weights.http_download import check_reachable, fetch_url

from .conftest import closed_port

BODY = os.urandom(3 * (1 << 20) + 12345)  # a few chunks, not a multiple of the chunk size


@pytest.fixture
def served(server):
    server.state.files["/blob.bin"] = BODY
    return server


def _cut_once(served, part, at: int) -> None:
    """A transfer that stops after ``at`` bytes, then a server that answers again."""
    served.state.cut_after = at
    with pytest.raises(DownloadError):
        fetch_url(f"{served.url}/blob.bin", part, progress=False, retries=0)
    served.state.dead = False


def test_whole_file(served, tmp_path):
    part = fetch_url(f"{served.url}/blob.bin", tmp_path / "blob.bin.part", progress=False)
    assert part.read_bytes() == BODY
    assert served.ranges("/blob.bin") == [None]


def test_cut_transfer_keeps_part_and_resumes_from_its_size(served, tmp_path):
    part = tmp_path / "blob.bin.part"
    served.state.cut_after = 1_000_000
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        fetch_url(f"{served.url}/blob.bin", part, progress=False, retries=1, retry_wait_s=0.01)
    kept = part.stat().st_size
    assert 0 < kept <= 1_000_000
    assert part.read_bytes() == BODY[:kept]

    served.state.dead = False
    fetch_url(f"{served.url}/blob.bin", part, progress=False)
    assert part.read_bytes() == BODY
    assert served.ranges("/blob.bin")[-1] == f"bytes={kept}-"


def test_cut_then_server_recovers_within_one_call(served, tmp_path):
    served.state.cut_after = 500_000
    served.state.dead_after_cut = False
    part = fetch_url(f"{served.url}/blob.bin", tmp_path / "b.part", progress=False, retry_wait_s=0.01)
    assert part.read_bytes() == BODY
    ranges = served.ranges("/blob.bin")
    assert ranges[0] is None and ranges[1].startswith("bytes=") and len(ranges) == 2


def test_server_without_range_support_restarts_cleanly(served, tmp_path):
    part = tmp_path / "blob.bin.part"
    _cut_once(served, part, 700_000)
    served.state.ignore_range = True
    fetch_url(f"{served.url}/blob.bin", part, progress=False)
    assert part.read_bytes() == BODY


def test_file_changed_on_the_server_is_not_spliced(served, tmp_path):
    part = tmp_path / "blob.bin.part"
    _cut_once(served, part, 800_000)
    new_body = os.urandom(len(BODY))
    served.state.files["/blob.bin"] = new_body  # new ETag: If-Range makes the server send it all
    fetch_url(f"{served.url}/blob.bin", part, progress=False)
    assert part.read_bytes() == new_body


def test_already_complete_part_is_recognised(served, tmp_path):
    part = fetch_url(f"{served.url}/blob.bin", tmp_path / "blob.bin.part", progress=False)
    fetch_url(f"{served.url}/blob.bin", part, progress=False)  # 416 on the Range request: nothing more to get
    assert part.read_bytes() == BODY
    assert served.ranges("/blob.bin")[-1] == f"bytes={len(BODY)}-"


def test_http_errors_are_reported(served, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_url(f"{served.url}/nothing.bin", tmp_path / "n.part", progress=False)


def test_unreachable_host_fails_fast():
    start = time.monotonic()
    with pytest.raises(DownloadError, match="cannot reach 127.0.0.1"):
        check_reachable(f"http://127.0.0.1:{closed_port()}/x", timeout=5)
    assert time.monotonic() - start < 30  # generous: a refused connection returns at once
