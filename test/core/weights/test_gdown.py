"""The gdown route (used for Google Drive ids), run on a loopback URL: gdown's own resumable
partial file, and the marker that keeps another source's partial file from being taken for it."""
from __future__ import annotations

import os

import pytest

from fcclip_core.weights.errors import DownloadError
from fcclip_core.weights.sources import gdown_to_part

BODY = os.urandom(2 * (1 << 20) + 777)


@pytest.fixture
def served(server):
    server.state.files["/ckpt.pth"] = BODY
    return server


def test_whole_file_is_named_part_only_when_complete(served, tmp_path):
    part = tmp_path / "fcclip_cocopan.pth.part"
    assert gdown_to_part(part, progress=False, url=f"{served.url}/ckpt.pth") == part
    assert part.read_bytes() == BODY
    assert list(tmp_path.glob("fcclip_cocopan.pth.part*.part")) == []


def test_cut_transfer_resumes_from_gdowns_partial_file(served, tmp_path):
    part = tmp_path / "fcclip_cocopan.pth.part"
    served.state.cut_after = 600_000
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        gdown_to_part(part, progress=False, url=f"{served.url}/ckpt.pth", retries=0)
    assert not part.exists()
    (partial,) = tmp_path.glob("fcclip_cocopan.pth.part*.part")
    kept = partial.stat().st_size
    assert 0 < kept <= 600_000

    served.state.dead = False
    gdown_to_part(part, progress=False, url=f"{served.url}/ckpt.pth")
    assert part.read_bytes() == BODY
    assert served.ranges("/ckpt.pth")[-1] == f"bytes={kept}-"


def test_a_partial_of_another_source_is_not_taken_for_complete(served, tmp_path):
    part = tmp_path / "fcclip_cocopan.pth.part"
    part.write_bytes(BODY[:1000])  # left by a plain-URL download (its own resume data, another key)
    gdown_to_part(part, progress=False, url=f"{served.url}/ckpt.pth")
    assert part.read_bytes() == BODY
