"""Resolution order (explicit path, cache, download if allowed, else an error naming the command)
and failing fast, with the command to run, when offline."""
from __future__ import annotations

import time

import pytest

from fcclip_core.tools.weights import main
from fcclip_core.weights import (
    DownloadError,
    WeightsFileError,
    WeightsNotFoundError,
    WeightsStore,
    resolve_weights,
)

from .conftest import CHECKPOINT_NAME, closed_port

GENEROUS_S = 60  # behaviour, not speed: "an error within seconds" instead of a hang


def test_nothing_cached_and_no_download_names_the_commands_without_network(weights_env, server):
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights()
    assert time.monotonic() - start < GENEROUS_S
    message = str(err.value)
    assert "fcclip-weights download tiny" in message
    assert f"fcclip-weights import {CHECKPOINT_NAME} open_clip_model.safetensors --model tiny" in message
    assert f"{server.url}/{CHECKPOINT_NAME}" in message  # where to fetch it by hand (the mirror here)
    assert server.state.requests == []  # no network touched


def test_download_when_allowed_then_cache(weights_env, server):
    first = resolve_weights(allow_download=True, progress=False)
    assert first.origin == "download" and not first.exported
    assert first.path == weights_env / "tiny" / CHECKPOINT_NAME and first.clip is not None
    requests = len(server.state.requests)
    second = resolve_weights(allow_download=True)
    assert second.origin == "cache" and second.path == first.path
    assert len(server.state.requests) == requests


def test_offline_download_fails_within_seconds_naming_the_command(weights_env, monkeypatch):
    monkeypatch.setenv("FCCLIP_WEIGHTS_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        resolve_weights(allow_download=True, progress=False)
    assert time.monotonic() - start < GENEROUS_S
    message = str(err.value)
    assert "cannot reach 127.0.0.1" in message
    assert "fcclip-weights download tiny" in message and "fcclip-weights import" in message


def test_hf_offline_mode_stops_the_clip_download_at_once(weights_env, server, monkeypatch):
    WeightsStore().download(only="checkpoint", progress=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        resolve_weights(allow_download=True, progress=False)
    assert time.monotonic() - start < GENEROUS_S
    assert "HF_HUB_OFFLINE" in str(err.value) and "fcclip-weights import" in str(err.value)
    assert not any("/resolve/" in path for _, path, _ in server.state.requests)


def test_explicit_path_comes_first(weights_env, server, reference_root, tmp_path, tiny_weights):
    WeightsStore().download(progress=False)
    full = reference_root / "tiny" / "weights.pth"  # a checkpoint that carries its text tower
    resolved = resolve_weights(explicit=full)
    assert resolved.origin == "explicit" and resolved.path == full and resolved.clip is None

    ckpt = tmp_path / "mine.pth"
    ckpt.write_bytes(tiny_weights.checkpoint_bytes())
    resolved = resolve_weights(explicit=ckpt)  # lacks the text tower: CLIP weights from the cache
    assert resolved.path == ckpt and resolved.clip == weights_env / "tiny" / "open_clip_convnext_fcref_tiny_d-fixture.safetensors"

    export = tmp_path / "mine.safetensors"
    WeightsStore().export(output=export)
    resolved = resolve_weights(explicit=export)
    assert resolved.exported and resolved.path == export


def test_explicit_checkpoint_without_clip_weights(weights_env, server, tmp_path, tiny_weights):
    ckpt = tmp_path / "mine.pth"
    ckpt.write_bytes(tiny_weights.checkpoint_bytes())
    with pytest.raises(WeightsNotFoundError, match="fcclip-weights download tiny --only clip"):
        resolve_weights(explicit=ckpt)
    resolved = resolve_weights(explicit=ckpt, allow_download=True, progress=False)
    assert resolved.clip is not None and resolved.clip.is_file()
    assert server.ranges(f"/{CHECKPOINT_NAME}") == []  # only the CLIP weights were fetched


def test_explicit_checkpoint_with_explicit_clip_weights(weights_env, tmp_path, tiny_weights):
    ckpt, clip = tmp_path / "mine.pth", tmp_path / "clip.safetensors"
    ckpt.write_bytes(tiny_weights.checkpoint_bytes())
    clip.write_bytes(tiny_weights.clip_bytes())
    resolved = resolve_weights(explicit=ckpt, explicit_clip=clip)  # nothing cached, nothing downloaded
    assert (resolved.path, resolved.clip, resolved.origin) == (ckpt, clip, "explicit")


def test_explicit_file_that_does_not_fit(weights_env, tmp_path, rn_tiny_checkpoint):
    import torch

    wrong = tmp_path / "wrong.pth"
    torch.save({"model": rn_tiny_checkpoint}, wrong)
    with pytest.raises(WeightsFileError, match="does not fit model config 'fixture_tiny'"):
        resolve_weights(explicit=wrong)
    with pytest.raises(WeightsFileError, match="file not found"):
        resolve_weights(explicit=tmp_path / "typo.pth")


def test_cli_path_and_errors(weights_env, server, capsys, tmp_path):
    assert main(["path"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fcclip-weights: error: no weights for model 'tiny'") and "fcclip-weights download tiny" in err

    other = tmp_path / "elsewhere"
    assert main(["--cache-dir", str(other), "path"]) == 1
    assert f"fcclip-weights --cache-dir {other} download tiny" in capsys.readouterr().err

    WeightsStore().download(progress=False)
    capsys.readouterr()
    assert main(["path"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == [str(weights_env / "tiny" / CHECKPOINT_NAME),
                     str(weights_env / "tiny" / "open_clip_convnext_fcref_tiny_d-fixture.safetensors")]


def test_unknown_model(weights_env, capsys):
    assert main(["download", "nope"]) == 1
    assert "unknown model 'nope'; known models: " in capsys.readouterr().err
