"""The CLIP backbone: built by open_clip from config data, frozen, official features."""
from __future__ import annotations

import pytest
import timm
import torch

from fcclip_core.config import TimmTrunkConfig, load_model_config
from fcclip_core.modeling.backbone import UnsupportedBackboneError, build_backbone
from fcclip_core.modeling.timm_trunks import register_timm_trunk
from fcclip_core.config import model_config_from_reference

from .conftest import max_abs_err


def test_config_defined_timm_trunk_is_built_from_its_data():
    cfg = load_model_config("fixture_tiny").backbone
    backbone = build_backbone(cfg)
    trunk = backbone.clip_model.visual.trunk
    assert [len(stage.blocks) for stage in trunk.stages] == [2, 2, 3, 2]
    assert backbone.output_channels() == {"stem": 32, "res2": 32, "res3": 64, "res4": 128, "res5": 256}
    assert backbone.embed_dim == 48


def test_trunk_registration_is_per_architecture():
    small = TimmTrunkConfig(name="same_name", base="convnext_large", args={"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]})
    other = TimmTrunkConfig(name="same_name", base="convnext_large", args={"depths": [1, 1, 2, 1], "dims": [8, 16, 32, 64]})
    first = register_timm_trunk(small)
    assert register_timm_trunk(small) == first  # idempotent
    second = register_timm_trunk(other)
    assert second != first
    assert len(timm.create_model(second).stages[2].blocks) == 2


def test_backbone_is_frozen_and_stays_in_eval_mode():
    backbone = build_backbone(load_model_config("fixture_tiny").backbone)
    backbone.train()
    assert not backbone.training and not backbone.clip_model.training
    assert all(not p.requires_grad for p in backbone.parameters())


def test_features_match_the_official_backbone(tiny_model, tiny_expected):
    for image in tiny_expected["images"]:
        with torch.inference_mode():
            features = tiny_model.forward_features(image["backbone_input"])
        for name in ("stem", "res2", "res3", "res4", "res5", "clip_vis_dense"):
            assert max_abs_err(features[name], image["backbone"][name]) < 1e-4, name


def test_channels_last_gives_the_same_features(tiny_model, tiny_expected):
    image = tiny_expected["images"][0]["backbone_input"]
    backbone = tiny_model.backbone
    with torch.inference_mode():
        fast = backbone.extract_features(image)
        backbone.channels_last = False
        try:
            plain = backbone.extract_features(image)
        finally:
            backbone.channels_last = True
    for name in fast:
        assert max_abs_err(fast[name], plain[name]) < 1e-5


def test_region_embeddings_match_the_official_pooling_and_projection(tiny_model, tiny_expected):
    image = tiny_expected["images"][1]
    record = {}
    with torch.inference_mode():
        emb = tiny_model.backbone.embed_regions(image["backbone"]["clip_vis_dense"], image["mask_for_pooling"], record)
    assert max_abs_err(record["pooled_clip_feature_raw"], image["pooled_clip_feature_raw"]) < 1e-5
    assert max_abs_err(emb, image["pooled_clip_embedding"]) < 1e-5


def test_resnet_backbone_is_reported_as_unsupported(reference_root):
    cfg = model_config_from_reference(reference_root / "rn_tiny")
    with pytest.raises(UnsupportedBackboneError, match="resnet"):
        build_backbone(cfg.backbone)
