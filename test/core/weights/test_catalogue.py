"""The shipped catalogue of released models, and catalogue files in general."""
from __future__ import annotations

import open_clip
import pytest

from fcclip_core.weights import CatalogueError, load_catalogue
from fcclip_core.weights.sources import OPEN_CLIP_PICKLE_WEIGHTS, OPEN_CLIP_SAFE_WEIGHTS, clip_candidate_files

RELEASED = {  # name -> (CLIP, Google Drive id of the official model zoo)
    "convnext_large": ("convnext_large_d_320", "1-91PIns86vyNaL3CzMmDD39zKGnPMtvj"),
    "rn50": ("RN50", "1tcB-8FNON-LwckXQbUyKcBA2G7TU65Zh"),
    "rn101": ("RN101", "1P0mdgftReWzVbPQ0O0CSBfW3krHhTOj0"),
    "rn50x4": ("RN50x4", "1nUpUsNUE22eOV9skxv9IyIkmCbg5jrIF"),
    "rn50x16": ("RN50x16", "1rJu2UwwtI0VLDl9CyB8Mkgw9qHlnX70W"),
    "rn50x64": ("RN50x64", "1rvfFVp5p3PZQsHp2NGVEBeYYcqgVVaZX"),
}


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.delenv("FCCLIP_WEIGHTS_CATALOGUE", raising=False)
    monkeypatch.delenv("FCCLIP_WEIGHTS_BASE_URL", raising=False)
    return load_catalogue()


def test_shipped_catalogue_lists_the_model_zoo(shipped):
    assert shipped.default == "convnext_large"
    assert set(shipped.names()) == set(RELEASED)
    default = shipped.get(None)
    assert default.checkpoint.filename == "fcclip_cocopan.pth"
    assert (default.clip.open_clip_name, default.clip.pretrained_tag) == ("convnext_large_d_320",
                                                                          "laion2b_s29b_b131k_ft_soup")
    assert default.config_available
    for name, (clip, drive_id) in RELEASED.items():
        entry = shipped.get(name)
        assert entry.clip.open_clip_name == clip
        assert [str(s) for s in entry.checkpoint.sources] == [f"gdrive:{drive_id}"]
        if name != "convnext_large":
            assert entry.clip.pretrained_tag == "openai"


def test_clip_locations_agree_with_open_clips_registry(shipped):
    for entry in shipped.models.values():
        cfg = open_clip.get_pretrained_cfg(entry.clip.open_clip_name, entry.clip.pretrained_tag)
        assert cfg, entry.name
        assert entry.clip.hf_hub == cfg["hf_hub"], entry.name
        registry = type(entry.clip)(entry.clip.open_clip_name, entry.clip.pretrained_tag)  # no hf_hub: ask open_clip
        assert registry.hub_location() == entry.clip.hub_location()


def test_open_clip_file_names():
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    assert (OPEN_CLIP_SAFE_WEIGHTS, OPEN_CLIP_PICKLE_WEIGHTS) == (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)
    assert clip_candidate_files(None) == [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
    assert clip_candidate_files("weights.bin") == ["weights.safetensors", "weights.bin"]


def test_base_url_replaces_every_checkpoint_source(shipped, monkeypatch):
    monkeypatch.setenv("FCCLIP_WEIGHTS_BASE_URL", "http://mirror.local/fcclip/")
    sources = shipped.get("rn50").checkpoint_sources()
    assert [(s.kind, s.location) for s in sources] == [("url", "http://mirror.local/fcclip/fcclip_rn50.pth")]


@pytest.mark.parametrize("text, message", [
    ("models: {}", "non-empty 'models'"),
    ("models: {a: {config: x, checkpoint: {filename: a.pth, sources: [{ftp: x}]}, "
     "clip: {open_clip_name: RN50, pretrained_tag: openai}}}", "a source is one of"),
    ("models: {a: {config: x, clip: {open_clip_name: RN50, pretrained_tag: openai}}}", "missing or malformed"),
    ("default: b\nmodels: {a: {config: x, checkpoint: {filename: a.pth}, "
     "clip: {open_clip_name: RN50, pretrained_tag: openai}}}", "default model 'b'"),
    ("models: {a: {config: x, checkpoint: {filename: ../a.pth}, "
     "clip: {open_clip_name: RN50, pretrained_tag: openai}}}", "a plain file name"),
])
def test_malformed_catalogues(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(path)


def test_a_model_config_name_finds_its_weights(weights_env):
    assert load_catalogue().get("fixture_tiny").name == "tiny"  # the test catalogue's entry for that config


def test_unknown_model_lists_the_known_ones(shipped):
    with pytest.raises(CatalogueError, match="unknown model 'rn18'; known models: convnext_large, rn50"):
        shipped.get("rn18")


def test_every_released_model_has_a_config_that_agrees_with_its_clip_weights(shipped):
    from fcclip_core.config import load_model_config

    for name in RELEASED:
        entry = shipped.get(name)
        assert entry.config_available, name
        backbone = load_model_config(entry.config).backbone
        assert (backbone.open_clip_name, backbone.pretrained_tag) == (entry.clip.open_clip_name,
                                                                       entry.clip.pretrained_tag), name
        expected_type = "convnext" if name == "convnext_large" else "resnet"
        assert backbone.type == expected_type
        if expected_type == "resnet":  # open_clip builds the "openai" weights with QuickGELU
            assert open_clip.get_pretrained_cfg(entry.clip.open_clip_name, "openai").get("quick_gelu") is True
            assert backbone.open_clip_config["quick_gelu"] is True
