"""The CLIP backbone: built by open_clip from config data, frozen, official features."""
from __future__ import annotations

import dataclasses

import pytest
import timm
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import AttentionPool2d

from fcclip_core.config import TimmTrunkConfig, load_model_config
from fcclip_core.modeling import build_model
from fcclip_core.modeling.backbone import (
    UnsupportedBackboneError,
    build_backbone,
    masked_attention_pool,
    resize_position_grid,
)
from fcclip_core.modeling.timm_trunks import register_timm_trunk

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


def test_unknown_backbone_type_is_a_clear_error():
    cfg = dataclasses.replace(load_model_config("fixture_tiny").backbone, type="vit")
    with pytest.raises(UnsupportedBackboneError, match="vit"):
        build_backbone(cfg)


# ----------------------------------------------------------------------------- ResNet CLIP


@pytest.fixture(scope="module")
def rn_dir(reference_root):
    return reference_root / "rn_tiny"


@pytest.fixture(scope="module")
def rn_model(rn_dir):
    return build_model(load_model_config("fixture_rn_tiny"), weights=rn_dir / "weights.pth")


@pytest.fixture(scope="module")
def rn_expected(rn_dir):
    return torch.load(rn_dir / "expected.pt", weights_only=False)


def test_resnet_backbone_channels_strides_and_frozen_batchnorm():
    backbone = build_backbone(load_model_config("fixture_rn_tiny").backbone)
    assert backbone.output_channels() == {"stem": 16, "res2": 64, "res3": 128, "res4": 256, "res5": 512}
    assert backbone.output_strides()["stem"] == 2 and backbone.output_strides()["res5"] == 32
    backbone.train()
    assert all(not m.training for m in backbone.modules())
    image = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        before = backbone.extract_features(image)["res5"]
        after = backbone.extract_features(image)["res5"]
    assert torch.equal(before, after)  # eval BatchNorm: running statistics never move
    assert backbone.clip_model.visual.bn1.num_batches_tracked.item() == 0


def test_resnet_features_and_region_embeddings_match_the_official_path(rn_model, rn_expected):
    for image in rn_expected["images"]:
        with torch.inference_mode():
            features = rn_model.forward_features(image["backbone_input"])
            record = {}
            emb = rn_model.backbone.embed_regions(features["clip_vis_dense"], image["mask_for_pooling"], record)
        for name in ("stem", "res2", "res3", "res4", "res5", "clip_vis_dense"):
            assert max_abs_err(features[name], image["backbone"][name]) < 1e-4, name
        for name in ("query", "key_value", "spatial_pos_embed"):
            assert max_abs_err(record["rn_attnpool"][name], image["rn_attnpool"][name]) < 1e-4, name
        assert torch.equal(record["rn_attnpool"]["attn_mask"], image["rn_attnpool"]["attn_mask"])
        assert max_abs_err(emb, image["pooled_clip_embedding"]) < 1e-4
        # a region that covers no CLIP cell pools to the output bias (torch >= 2.5 semantics)
        empty = ~(image["mask_for_pooling"] > 0).flatten(2).any(-1)[0]
        assert empty.any()
        bias = rn_model.backbone.clip_model.visual.attnpool.c_proj.bias
        assert torch.allclose(emb[0, empty], bias.expand(int(empty.sum()), -1))


def test_masked_attention_pool_equals_torch_multi_head_attention():
    torch.manual_seed(0)
    pool = AttentionPool2d(spacial_dim=3, embed_dim=64, num_heads=4, output_dim=24).eval()
    batch, regions, tokens = 2, 5, 12
    key_value = torch.randn(batch, tokens, 64)
    query = torch.randn(batch, 64)
    allowed = torch.rand(batch, regions, tokens) > 0.5
    allowed[0, 0] = False  # nothing to attend to
    allowed[1, 1] = True
    ours = masked_attention_pool(pool, query, key_value, allowed)
    for b in range(batch):
        torch_out, _ = F.multi_head_attention_forward(
            query=query[b].expand(regions, 1, 64), key=key_value[b].unsqueeze(1), value=key_value[b].unsqueeze(1),
            embed_dim_to_check=64, num_heads=4, in_proj_weight=None,
            in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias, training=False,
            need_weights=False, attn_mask=(~allowed[b]).repeat(4, 1, 1), use_separate_proj_weight=True,
            q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight)
        torch_out = torch_out[:, 0]
        if b == 0:
            assert torch.allclose(ours[0, 0], pool.c_proj.bias, atol=1e-6)
            torch_out = torch_out[1:]
            mine = ours[0, 1:]
        else:
            mine = ours[b]
        assert torch.isfinite(mine).all()
        assert max_abs_err(mine, torch_out) < 1e-5


def test_position_grid_resize_keeps_a_matching_grid_and_rejects_a_non_square_one():
    grid = torch.randn(49, 8)
    assert resize_position_grid(grid, 7, 7) is grid
    assert resize_position_grid(grid, 4, 9).shape == (36, 8)
    with pytest.raises(ValueError, match="square"):
        resize_position_grid(torch.randn(50, 8), 4, 4)
