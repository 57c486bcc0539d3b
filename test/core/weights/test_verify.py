"""Structural checks against the real tiny model: which keys, which shapes, which model."""
from __future__ import annotations

import pytest
import torch

from fcclip_core.weights.errors import WeightsFileError
from fcclip_core.weights.verify import check_checkpoint, check_clip, expected_shapes, kind_of, load_complete

from .conftest import CLIP_PREFIX

CONFIG = "fixture_tiny"


def test_expected_shapes_come_from_the_model(tiny_weights):
    shapes = expected_shapes(CONFIG)
    official = {k: tuple(v.shape) for k, v in tiny_weights.full.items() if k != "criterion.empty_weight"}
    assert shapes == official


def test_released_like_checkpoint_needs_exactly_the_text_tower(tiny_weights):
    check = check_checkpoint(tiny_weights.checkpoint, CONFIG, "ckpt")
    assert check.needs_clip
    assert set(check.clip_keys_needed) == set(tiny_weights.removed)
    assert not check_checkpoint(tiny_weights.full, CONFIG, "full").needs_clip


def test_kinds(tiny_weights, rn_tiny_checkpoint):
    assert kind_of(tiny_weights.checkpoint) == "checkpoint"
    assert kind_of(rn_tiny_checkpoint) == "checkpoint"
    assert kind_of(tiny_weights.clip) == "clip"
    assert kind_of({"conv.weight": torch.zeros(1)}) == "unknown"


def test_wrong_shapes_name_key_expected_and_found(tiny_weights):
    bad = dict(tiny_weights.checkpoint)
    bad["sem_seg_head.predictor.query_feat.weight"] = torch.zeros(20, 32)
    with pytest.raises(WeightsFileError) as err:
        check_checkpoint(bad, CONFIG, "bad.pth")
    message = str(err.value)
    assert "bad.pth" in message and "1 tensors have the wrong shape" in message
    assert "sem_seg_head.predictor.query_feat.weight: expected [20, 64], found [20, 32]" in message


def test_checkpoint_of_another_model_is_rejected(rn_tiny_checkpoint):
    with pytest.raises(WeightsFileError, match="wrong model|does not fit model config"):
        check_checkpoint(rn_tiny_checkpoint, CONFIG, "rn.pth")


def test_missing_head_keys_are_listed(tiny_weights):
    partial = {k: v for k, v in tiny_weights.checkpoint.items() if not k.startswith("sem_seg_head.predictor.")}
    with pytest.raises(WeightsFileError, match=r"keys missing: sem_seg_head\.predictor\."):
        check_checkpoint(partial, CONFIG, "partial.pth")


def test_unexpected_keys_are_listed(tiny_weights):
    extra = dict(tiny_weights.checkpoint, **{"sem_seg_head.extra_layer.weight": torch.zeros(3)})
    with pytest.raises(WeightsFileError, match=r"keys the model does not have: sem_seg_head\.extra_layer\.weight"):
        check_checkpoint(extra, CONFIG, "extra.pth")


def test_clip_weights_are_checked_against_the_needed_keys(tiny_weights):
    needed = check_checkpoint(tiny_weights.checkpoint, CONFIG, "ckpt").clip_keys_needed
    check_clip(tiny_weights.clip, CONFIG, "clip", needed)
    check_clip(tiny_weights.clip, CONFIG, "clip")  # without a checkpoint: the text tower
    wrong = dict(tiny_weights.clip, **{"token_embedding.weight": torch.zeros(49408, 32)})
    with pytest.raises(WeightsFileError, match=r"token_embedding\.weight: expected \[49408, 64\], found \[49408, 32\]"):
        check_clip(wrong, CONFIG, "clip", needed)
    lacking = {k: v for k, v in tiny_weights.clip.items() if not k.startswith("ln_final.")}
    with pytest.raises(WeightsFileError, match=r"2 keys missing: ln_final\.weight, ln_final\.bias"):
        check_clip(lacking, CONFIG, "clip", needed)


def test_files_of_the_wrong_role(tiny_weights):
    with pytest.raises(WeightsFileError, match="an FC-CLIP checkpoint, not open_clip CLIP weights"):
        check_clip(tiny_weights.checkpoint, CONFIG, "x")
    with pytest.raises(WeightsFileError, match="an open_clip CLIP weights file, not an FC-CLIP checkpoint"):
        check_checkpoint(tiny_weights.clip, CONFIG, "x")


def test_load_complete_assigns_every_tensor(tiny_weights):
    model = load_complete(tiny_weights.checkpoint, tiny_weights.clip, CONFIG, "ckpt")
    state = model.state_dict()
    for key, value in tiny_weights.full.items():
        if key != "criterion.empty_weight":
            assert torch.equal(state[key], value), key
    with pytest.raises(WeightsFileError, match="MISSING"):
        load_complete(tiny_weights.checkpoint, None, CONFIG, "ckpt")


def test_clip_prefix_is_the_models():
    assert all(k.startswith(("backbone.", "sem_seg_head.", "void_embedding.")) for k in expected_shapes(CONFIG))
    assert any(k.startswith(CLIP_PREFIX) for k in expected_shapes(CONFIG))
