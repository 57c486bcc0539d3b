"""page_out drops file-backed weight pages from resident memory and never changes a value."""
from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from fcclip_core.memory import page_out, page_ranges

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise(MADV_PAGEOUT) is Linux-only")


def resident_file_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


def test_file_backed_tensor_leaves_resident_memory_and_comes_back_unchanged(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.arange(64 * 2**20 // 4, dtype=torch.float32)}, str(path))  # 64 MiB
    tensor = load_file(str(path))["w"]
    checksum = float(tensor.double().sum())  # touches every page
    before = resident_file_kib()
    advised = page_out([tensor])
    assert advised >= 64 * 2**20
    assert before - resident_file_kib() > 48 * 1024  # most of the 64 MiB left the resident set
    assert float(tensor.double().sum()) == checksum  # read back from the file on demand


def test_anonymous_memory_is_never_lost():
    tensor = torch.randn(4 * 2**20)
    copy = tensor.clone()
    page_out([tensor])
    assert torch.equal(tensor, copy)


def test_page_ranges_are_aligned_and_merged():
    base = torch.zeros(10_000)
    ranges = page_ranges([base[:10], base[5000:5010], torch.empty(0)])
    assert all(start % 4096 == 0 and end % 4096 == 0 and end > start for start, end in ranges)
    assert len(ranges) <= 2
    assert ranges[0][0] <= base.data_ptr() < ranges[-1][1]
