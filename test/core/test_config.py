"""Model configs: shipped YAML files, official fixture configs, validation."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from fcclip_core.config import (
    ConfigError,
    ModelConfig,
    available_model_configs,
    dump_model_config,
    load_model_config,
    model_config_from_reference,
    released_model_config,
)


def _architecture(cfg: ModelConfig) -> dict:
    """Everything that shapes the network or its outputs (not the config's name)."""
    data = cfg.to_dict()
    data.pop("name")
    data["backbone"].pop("open_clip_name")
    data["backbone"].pop("pretrained_tag")
    trunk = data["backbone"]["timm_trunk"]
    if trunk:
        # defaults the fixture spells out and our YAML leaves to timm
        trunk["args"].pop("head_norm_first", None)
        trunk["args"].pop("kernel_sizes", None)
    return data


def test_shipped_configs_are_listed_and_load():
    names = available_model_configs()
    assert {"convnext_large", "fixture_tiny"} <= set(names)
    for name in names:
        assert load_model_config(name).name == name


def test_released_config_matches_the_official_effective_config(reference_root):
    ours = load_model_config("convnext_large")
    official = model_config_from_reference(reference_root / "large")
    assert _architecture(ours) == _architecture(official)
    assert ours.backbone.pretrained_tag == official.backbone.pretrained_tag == "laion2b_s29b_b131k_ft_soup"
    assert ours.decoder.num_layers == 9 and ours.pixel_decoder.encoder_ffn_dim == 1024
    assert ours.input.min_size_test == 800


def test_fixture_tiny_config_matches_the_fixture(reference_root):
    ours = load_model_config("fixture_tiny")
    official = model_config_from_reference(reference_root / "tiny")
    assert _architecture(ours) == _architecture(official)
    assert official.backbone.timm_trunk.args["depths"] == [2, 2, 3, 2]


def test_resnet_fixture_config_is_read_as_a_resnet_backbone(reference_root):
    cfg = model_config_from_reference(reference_root / "rn_tiny")
    assert cfg.backbone.type == "resnet"
    assert cfg.inference.ensemble_on_valid_mask is True
    assert _architecture(load_model_config("fixture_rn_tiny")) == _architecture(cfg)


@pytest.mark.parametrize("name", ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64"])
def test_resnet_configs_match_the_official_effective_configs(reference_root, name):
    ours = load_model_config(name.lower())
    official = released_model_config(reference_root / "rn" / f"config_{name}.json")
    assert ours.backbone.type == official.backbone.type == "resnet"
    assert ours.backbone.pretrained_tag == official.backbone.pretrained_tag == "openai"
    # the released weights are open_clip's "openai" ones, which it builds with QuickGELU; the official
    # effective config was measured on random weights (plain GELU), the only difference allowed
    assert ours.backbone.open_clip_config["quick_gelu"] is True
    assert official.backbone.open_clip_config["quick_gelu"] is False
    mine, theirs = _architecture(ours), _architecture(official)
    for arch in (mine, theirs):
        arch["backbone"]["open_clip_config"].pop("quick_gelu")
    assert mine == theirs
    assert ours.inference.ensemble_on_valid_mask is True and ours.embed_dim == official.embed_dim


def test_a_folder_of_several_released_configs_is_resolved_by_the_fixture_name(reference_root, tmp_path):
    for name in ("RN50", "RN50x4"):
        (tmp_path / f"config_{name}.json").symlink_to(reference_root / "rn" / f"config_{name}.json")
    (tmp_path / "large_RN50x4").mkdir()
    (tmp_path / "other").mkdir()
    assert model_config_from_reference(tmp_path / "large_RN50x4").backbone.open_clip_name == "RN50x4"
    with pytest.raises(ConfigError, match="several config_"):
        model_config_from_reference(tmp_path / "other")


def test_yaml_round_trip(tmp_path):
    cfg = load_model_config("fixture_tiny")
    path = tmp_path / "copy.yaml"
    dump_model_config(cfg, path)
    assert load_model_config(path) == cfg


def test_replace_changes_one_field_of_a_section():
    cfg = load_model_config("convnext_large")
    native = cfg.replace(input={"min_size_test": None})
    assert native.input.min_size_test is None
    assert native.input.pixel_mean == cfg.input.pixel_mean
    assert cfg.input.min_size_test == 800


def test_unknown_keys_and_names_are_rejected(tmp_path):
    data = load_model_config("fixture_tiny").to_dict()
    data["decoder"]["num_querys"] = 5
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="num_querys"):
        load_model_config(path)
    with pytest.raises(ConfigError, match="unknown model config"):
        load_model_config("no_such_model")


def test_inconsistent_sizes_are_rejected():
    data = load_model_config("fixture_tiny").to_dict()
    data["decoder"]["heads"] = 5  # 64 is not divisible by 5
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig.from_dict(data)
    data = load_model_config("fixture_tiny").to_dict()
    data["backbone"]["type"] = "vit"
    with pytest.raises(ConfigError, match="backbone.type"):
        ModelConfig.from_dict(data)


def test_reference_dir_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        model_config_from_reference(tmp_path)


def test_configs_are_immutable():
    cfg = load_model_config("fixture_tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.decoder.num_queries = 3
