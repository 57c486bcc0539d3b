"""`fcclip-weights download` end to end: loopback mirror for the checkpoint, loopback Hugging Face
endpoint (the real hf_hub_download) for the CLIP weights."""
from __future__ import annotations

import hashlib
import json

import pytest

from fcclip_core.tools.weights import main
from fcclip_core.weights import DownloadError, WeightsFileError, WeightsStore, load_catalogue

from .conftest import CHECKPOINT_NAME, HF_COMMIT, TINY_CLIP_REPO, to_bytes, write_catalogue

CLIP_PATH = f"/{TINY_CLIP_REPO}/resolve/main/open_clip_model.safetensors"
CLIP_NAME = "open_clip_convnext_fcref_tiny_d-fixture.safetensors"


def test_download_fetches_checks_and_records_both_files(weights_env, server, tiny_weights, capsys):
    assert main(["download", "--no-progress"]) == 0
    root = weights_env / "tiny"
    assert (root / CHECKPOINT_NAME).read_bytes() == tiny_weights.checkpoint_bytes()
    assert (root / CLIP_NAME).read_bytes() == tiny_weights.clip_bytes()
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["files"]["checkpoint"]["sha256"] == hashlib.sha256(tiny_weights.checkpoint_bytes()).hexdigest()
    assert manifest["files"]["checkpoint"]["needs_clip"] is True
    assert manifest["files"]["clip"]["origin"] == f"hf:{TINY_CLIP_REPO}/open_clip_model.safetensors@{HF_COMMIT[:12]}"
    assert list((root / ".partial").glob("*.part*")) == []
    assert ("HEAD", CLIP_PATH, None) in server.state.requests  # went through huggingface_hub's protocol
    assert "tiny             complete" in capsys.readouterr().out

    requests = len(server.state.requests)
    assert main(["download", "--no-progress"]) == 0  # complete: nothing fetched again
    assert len(server.state.requests) == requests


def test_safetensors_missing_on_the_hub_falls_back_to_the_pickle(weights_env, server, tiny_weights):
    del server.state.files[CLIP_PATH]
    server.state.files[f"/{TINY_CLIP_REPO}/resolve/main/open_clip_pytorch_model.bin"] = to_bytes(tiny_weights.clip)
    WeightsStore().download(progress=False)
    assert (weights_env / "tiny" / "open_clip_convnext_fcref_tiny_d-fixture.bin").is_file()


def test_interrupted_download_leaves_no_complete_looking_file_and_resumes(weights_env, server, tiny_weights):
    server.state.cut_after = 3_000_000
    with pytest.raises(DownloadError) as err:
        WeightsStore().download(progress=False)
    root = weights_env / "tiny"
    assert not (root / CHECKPOINT_NAME).exists()
    assert "fcclip-weights download tiny" in str(err.value)
    part = root / ".partial" / f"{CHECKPOINT_NAME}.part"
    kept = part.stat().st_size
    assert 0 < kept <= 3_000_000
    status = WeightsStore().status()
    assert status.files["checkpoint"].state == "partial" and not status.ready
    assert str(kept) in status.files["checkpoint"].detail

    server.state.dead = False
    WeightsStore().download(progress=False)
    assert (root / CHECKPOINT_NAME).read_bytes() == tiny_weights.checkpoint_bytes()
    assert server.ranges(f"/{CHECKPOINT_NAME}")[-1] == f"bytes={kept}-"
    assert WeightsStore().status().ready


def test_truncated_file_served_whole_is_rejected_and_deleted(weights_env, server, tiny_weights):
    server.state.files[f"/{CHECKPOINT_NAME}"] = tiny_weights.checkpoint_bytes()[:-4096]
    with pytest.raises(WeightsFileError, match="truncated or corrupt"):
        WeightsStore().download(progress=False)
    root = weights_env / "tiny"
    assert not (root / CHECKPOINT_NAME).exists()
    assert not list((root / ".partial").glob(f"{CHECKPOINT_NAME}.part*"))  # next run starts afresh
    assert WeightsStore().status().files["checkpoint"].state == "missing"


def test_checkpoint_of_another_model_is_rejected(weights_env, server, rn_tiny_checkpoint):
    server.state.files[f"/{CHECKPOINT_NAME}"] = to_bytes({"model": rn_tiny_checkpoint})
    assert main(["download", "--no-progress"]) == 1
    assert not (weights_env / "tiny" / CHECKPOINT_NAME).exists()


def test_wrong_clip_weights_are_rejected(weights_env, server, tiny_weights):
    from safetensors.torch import save

    clip = {k: v.contiguous() for k, v in tiny_weights.clip.items() if not k.startswith("transformer.resblocks.1.")}
    server.state.files[CLIP_PATH] = save(clip)
    with pytest.raises(WeightsFileError, match=r"12 keys missing: transformer\.resblocks\.\* \(12 keys\)"):
        WeightsStore().download(progress=False)
    status = WeightsStore().status()
    assert status.files["checkpoint"].state == "complete" and status.files["clip"].state == "missing"


def test_published_hash_is_checked(weights_env, server, tmp_path, monkeypatch):
    monkeypatch.setenv("FCCLIP_WEIGHTS_CATALOGUE", str(write_catalogue(tmp_path / "pinned.yaml", "0" * 64)))
    with pytest.raises(WeightsFileError, match="sha256 .* differs from the published 0000"):
        WeightsStore(catalogue=load_catalogue()).download(progress=False)


def test_only_clip(weights_env, server):
    WeightsStore().download(only="clip", progress=False)
    status = WeightsStore().status()
    assert status.files["clip"].state == "complete" and status.files["checkpoint"].state == "missing"
    assert server.ranges(f"/{CHECKPOINT_NAME}") == []


def test_model_without_shipped_config_is_refused(weights_env, server):
    with pytest.raises(Exception, match="not_shipped_yet.*is not shipped"):
        WeightsStore().download("later", progress=False)


def test_interrupted_clip_download_resumes_in_a_later_run(weights_env, server, tiny_weights):
    WeightsStore().download(only="checkpoint", progress=False)
    server.state.cut_after = 5_000_000
    with pytest.raises(DownloadError, match="could not download the CLIP weights"):
        WeightsStore().download(progress=False)
    status = WeightsStore().status()
    assert status.files["clip"].state == "partial" and status.files["clip"].size == 5_000_000
    assert not status.ready and not list((weights_env / "tiny").glob("open_clip_*"))

    server.state.dead = False
    WeightsStore().download(progress=False)
    assert (weights_env / "tiny" / CLIP_NAME).read_bytes() == tiny_weights.clip_bytes()
    assert server.ranges(CLIP_PATH)[-1] == "bytes=5000000-"


def test_clip_bytes_that_do_not_match_the_hubs_sha256_are_rejected(weights_env, server, tiny_weights):
    server.state.etag_override = '"%s"' % ("ab" * 32)  # the Hub's ETag of a large file is its sha256
    with pytest.raises(WeightsFileError, match="differs from the published abab"):
        WeightsStore().download(progress=False)
    assert not list((weights_env / "tiny").glob("open_clip_*"))
    assert not list((weights_env / "tiny" / ".partial").glob("open_clip_model.safetensors.part*"))
