"""Reading weight files: formats told from their bytes, damaged files named as such."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from fcclip_core.weights.errors import WeightsFileError
from fcclip_core.weights.files import export_metadata, read_tensors, safetensors_shapes, sniff_format

from .conftest import to_bytes

STATE = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b.bias": torch.ones(3)}


def test_detectron2_checkpoint_is_unwrapped_and_memory_mapped(tmp_path):
    path = tmp_path / "renamed.bin"  # the name says nothing: the bytes do
    path.write_bytes(to_bytes({"model": STATE, "iteration": 5}))
    assert sniff_format(path) == "torch-zip"
    tensors = read_tensors(path)
    assert set(tensors) == set(STATE) and torch.equal(tensors["a.weight"], STATE["a.weight"])


def test_module_prefix_and_state_dict_wrapper(tmp_path):
    path = tmp_path / "ddp.pth"
    path.write_bytes(to_bytes({"state_dict": {f"module.{k}": v for k, v in STATE.items()}}))
    assert set(read_tensors(path)) == set(STATE)


def test_safetensors_whatever_the_suffix(tmp_path):
    path = tmp_path / "weights.pth"
    save_file(STATE, str(path))
    assert sniff_format(path) == "safetensors"
    assert torch.equal(read_tensors(path)["b.bias"], STATE["b.bias"])
    assert safetensors_shapes(path) == {"a.weight": (2, 3), "b.bias": (3,)}
    assert export_metadata(path) is None  # not written by fcclip-weights export


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "cut.pth"
    data = to_bytes({"model": STATE})
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError, match=r"cut\.pth: truncated or corrupt torch-zip file"):
        read_tensors(path)


def test_truncated_safetensors(tmp_path):
    path = tmp_path / "cut.safetensors"
    save_file(STATE, str(path))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(WeightsFileError, match="truncated or padded safetensors file"):
        read_tensors(path)


def test_html_page_saved_as_checkpoint(tmp_path):
    path = tmp_path / "fcclip_cocopan.pth"
    path.write_text("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title>", encoding="utf-8")
    with pytest.raises(WeightsFileError, match="an HTML page, not a weights file"):
        read_tensors(path)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"hello, this is some text and no checkpoint at all", "not a weights file"),
])
def test_not_a_weights_file(tmp_path, content, message):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsFileError, match=message):
        read_tensors(path)


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(to_bytes({"model": STATE, "hook": _NotATensor()}))
    with pytest.raises(WeightsFileError, match="holds Python objects besides tensors"):
        read_tensors(path)


def test_checkpoint_without_tensors(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(to_bytes({"model": {"iteration": 3}}))
    with pytest.raises(WeightsFileError, match="holds no tensors"):
        read_tensors(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsFileError, match="file not found"):
        read_tensors(tmp_path / "nope.pth")


class _NotATensor:
    pass
