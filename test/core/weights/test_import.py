"""`fcclip-weights import`: files fetched by hand, recognised, checked, copied, recorded; `list`."""
from __future__ import annotations

import json

import pytest

from fcclip_core.tools.weights import main
from fcclip_core.weights import WeightsFileError, WeightsStore

from .conftest import CHECKPOINT_NAME, to_bytes


@pytest.fixture
def fetched_by_hand(tmp_path, tiny_weights):
    """The two released-like files as a person would bring them on a USB stick (own names)."""
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "downloaded (1).pth").write_bytes(tiny_weights.checkpoint_bytes())
    (usb / "open_clip_model.safetensors").write_bytes(tiny_weights.clip_bytes())
    return usb


def test_import_both_files_in_any_order(weights_env, fetched_by_hand, capsys):
    clip, ckpt = fetched_by_hand / "open_clip_model.safetensors", fetched_by_hand / "downloaded (1).pth"
    assert main(["import", str(clip), str(ckpt), "--model", "tiny"]) == 0
    root = weights_env / "tiny"
    assert (root / CHECKPOINT_NAME).read_bytes() == ckpt.read_bytes()
    assert (root / "open_clip_convnext_fcref_tiny_d-fixture.safetensors").read_bytes() == clip.read_bytes()
    assert ckpt.exists() and clip.exists()  # the originals stay
    out = capsys.readouterr().out
    assert "imported" in out and "tiny             complete" in out
    assert WeightsStore().status("tiny").ready


def test_list_reports_complete_partial_changed(weights_env, fetched_by_hand, capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    tiny = next(m for m in listing["models"] if m["model"] == "tiny")
    assert not tiny["ready"] and tiny["files"]["checkpoint"]["state"] == "missing"
    later = next(m for m in listing["models"] if m["model"] == "later")
    assert later["config_available"] is False

    main(["import", str(fetched_by_hand / "downloaded (1).pth"), str(fetched_by_hand / "open_clip_model.safetensors")])
    capsys.readouterr()
    assert main(["list", "--verify"]) == 0
    text = capsys.readouterr().out
    assert "tiny             complete" in text and "later            config not shipped yet" in text

    with open(weights_env / "tiny" / CHECKPOINT_NAME, "r+b") as f:  # damaged after the check
        f.seek(100)
        f.write(b"\0\0\0\0")
    status = WeightsStore().status("tiny", verify=True)
    assert status.files["checkpoint"].state in ("changed", "corrupt") and not status.ready


def test_import_rejects_a_damaged_file_and_records_nothing(weights_env, tmp_path, tiny_weights):
    bad = tmp_path / "fcclip_cocopan.pth"
    bad.write_bytes(tiny_weights.checkpoint_bytes()[:500_000])
    with pytest.raises(WeightsFileError, match="truncated or corrupt"):
        WeightsStore().import_files([bad])
    root = weights_env / "tiny"
    assert not (root / CHECKPOINT_NAME).exists() and not (root / "manifest.json").exists()


def test_import_rejects_another_models_checkpoint(weights_env, tmp_path, rn_tiny_checkpoint, capsys):
    other = tmp_path / "fcclip_rn50.pth"
    other.write_bytes(to_bytes({"model": rn_tiny_checkpoint}))
    assert main(["import", str(other)]) == 1
    err = capsys.readouterr().err
    assert "does not fit model config 'fixture_tiny'" in err and "expected [64, 256, 1, 1], found [64, 512, 1, 1]" in err
    assert not (weights_env / "tiny" / CHECKPOINT_NAME).exists()


def test_import_rejects_clip_weights_of_another_clip(weights_env, tmp_path, reference_root, capsys):
    import torch

    rn = torch.load(reference_root / "rn_tiny" / "weights.pth", weights_only=True)
    prefix = "backbone.clip_model."
    other_clip = tmp_path / "open_clip_pytorch_model.bin"
    other_clip.write_bytes(to_bytes({k[len(prefix):]: v for k, v in rn.items() if k.startswith(prefix)}))
    assert main(["import", str(other_clip)]) == 1
    assert "not the CLIP weights of model config 'fixture_tiny'" in capsys.readouterr().err


def test_import_of_something_else(weights_env, tmp_path, capsys):
    page = tmp_path / "fcclip_cocopan.pth"
    page.write_text("<html><body>Sorry, you can't view or download this file at this time.</body></html>")
    assert main(["import", str(page)]) == 1
    assert "an HTML page, not a weights file" in capsys.readouterr().err
