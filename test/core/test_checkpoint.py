"""Checkpoint loading: official layout, CLIP text tower from open_clip weights, clear errors."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from fcclip_core.checkpoint import CLIP_PREFIX, CheckpointError, load_checkpoint, read_state_dict
from fcclip_core.config import model_config_from_reference
from fcclip_core.modeling import build_empty_model, build_model

TEXT_TOWER = ("token_embedding.", "ln_final.", "transformer.resblocks.")


@pytest.fixture(scope="module")
def tiny(reference_root):
    fixture = reference_root / "tiny"
    cfg = model_config_from_reference(fixture)
    weights = torch.load(fixture / "weights.pth", weights_only=True)
    expected = torch.load(fixture / "expected.pt", weights_only=True)
    return cfg, weights, expected


def _outputs(model, expected):
    text = expected["text"]
    out = model(expected["images"][0]["backbone_input"], text["text_classifier"], text["num_templates"],
                expected["category_overlapping_mask"])
    return out.pred_masks, out.mask_cls_logprobs, out.out_vocab_logits


def _is_text_tower(key: str) -> bool:
    return key.startswith(CLIP_PREFIX) and key[len(CLIP_PREFIX):].startswith(TEXT_TOWER)


def test_official_layout_loads_one_to_one(tiny, tmp_path):
    cfg, weights, _ = tiny
    path = tmp_path / "model_final.pth"
    torch.save({"model": weights, "iteration": 5}, path)  # detectron2 checkpoint layout
    model = build_model(cfg, weights=path)
    report = model.load_report
    assert report.ok and not report.from_clip_pretrained
    assert report.ignored == ["criterion.empty_weight"]
    assert len(report.loaded) == len(weights) - 1
    state = model.state_dict()
    assert all(torch.equal(state[k], weights[k]) for k in report.loaded)
    assert not model.training and all(not p.requires_grad for p in model.backbone.parameters())


def test_text_tower_comes_from_open_clip_weights_bit_identically(tiny, tmp_path):
    cfg, weights, expected = tiny
    released = {k: v for k, v in weights.items() if not _is_text_tower(k)}
    clip_only = {k[len(CLIP_PREFIX):]: v for k, v in weights.items() if k.startswith(CLIP_PREFIX)}
    assert len(released) < len(weights)
    clip_path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in clip_only.items()}, str(clip_path))

    with pytest.raises(CheckpointError) as err:
        build_model(cfg, weights=released)
    message = str(err.value)
    assert "backbone.clip_model.token_embedding.weight" in message
    assert "transformer.resblocks" in message and "clip_pretrained" in message

    combined = build_model(cfg, weights=released, clip_pretrained=clip_path)
    report = combined.load_report
    assert report.ok
    assert sorted(report.from_clip_pretrained) == sorted(k for k in weights if _is_text_tower(k))
    full = build_model(cfg, weights=weights)
    for a, b in zip(_outputs(combined, expected), _outputs(full, expected)):
        assert torch.equal(a, b)
    text = ["a photo of a cat."]
    import open_clip

    tokens = open_clip.tokenize(text)
    assert torch.equal(combined.clip_model.encode_text(tokens), full.clip_model.encode_text(tokens))


def test_mis_shaped_keys_are_named(tiny):
    cfg, weights, _ = tiny
    bad = dict(weights)
    bad["sem_seg_head.predictor.query_feat.weight"] = torch.zeros(7, 64)
    with pytest.raises(CheckpointError, match=r"MIS-SHAPED 1: sem_seg_head.predictor.query_feat.weight checkpoint \[7, 64\]"):
        build_model(cfg, weights=bad)


def test_unexpected_keys_are_named(tiny):
    cfg, weights, _ = tiny
    extra = dict(weights)
    extra["sem_seg_head.predictor.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="UNEXPECTED 1: sem_seg_head.predictor.extra_head.weight"):
        build_model(cfg, weights=extra)
    report = load_checkpoint(build_empty_model(cfg), extra, strict=False)
    assert report.unexpected == ["sem_seg_head.predictor.extra_head.weight"] and not report.ok


def test_checkpoint_of_another_model_is_refused(tiny):
    cfg, weights, _ = tiny
    with pytest.raises(CheckpointError, match="does not look like a checkpoint"):
        build_model(cfg, weights={"encoder.weight": torch.zeros(3), "decoder.bias": torch.zeros(2)})
    # the tiny fixture's weights in the ConvNeXt-L model: right names, wrong shapes
    with pytest.raises(CheckpointError, match=r"does not look like(.|\n)*other shapes(.|\n)*MIS-SHAPED"):
        load_checkpoint(build_empty_model("convnext_large"), weights)


@pytest.mark.parametrize("config", ["convnext_large", "fixture_rn_tiny"])
def test_checkpoint_of_another_shipped_model_names_that_model(tiny, config):
    _, weights, _ = tiny
    with pytest.raises(CheckpointError) as raised:
        build_model(config, weights=weights)
    message = str(raised.value)
    assert f"not a checkpoint of the model {config!r}" in message
    assert "fit the shipped model 'fixture_tiny' (100% of names and shapes agree)" in message
    assert "model_config:=fixture_tiny" in message
    assert "CLIP" not in message  # the missing-CLIP-weights hint does not apply to another model's file


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")
    path = tmp_path / "notes.pth"
    torch.save({"note": "no tensors"}, path)
    with pytest.raises(CheckpointError, match="no tensors"):
        read_state_dict(path)


def test_shipped_fixture_config_runs_the_shared_tiny_weights(tiny, reference_root):
    _, weights, expected = tiny
    shipped = build_model("fixture_tiny", weights=reference_root / "tiny" / "weights.pth")
    assert shipped.load_report.ok
    reference = build_model(tiny[0], weights=weights)
    for a, b in zip(_outputs(shipped, expected), _outputs(reference, expected)):
        assert torch.equal(a, b)


def test_resnet_checkpoint_is_completed_from_openai_format_clip_weights(reference_root, tmp_path):
    """OpenAI's CLIP files are fp16 and carry three metadata entries; the text tower still loads."""
    fixture = reference_root / "rn_tiny"
    weights = torch.load(fixture / "weights.pth", weights_only=True)
    released = {k: v for k, v in weights.items() if not _is_text_tower(k)}
    clip_only = {k[len(CLIP_PREFIX):]: v.half() if v.is_floating_point() else v
                 for k, v in weights.items() if k.startswith(CLIP_PREFIX)}
    clip_only.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77),
                     vocab_size=torch.tensor(49408))
    clip_path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(clip_only, clip_path)
    model = build_model(model_config_from_reference(fixture), weights=released, clip_pretrained=clip_path)
    report = model.load_report
    assert report.ok and report.from_clip_pretrained and all(_is_text_tower(k) for k in report.from_clip_pretrained)
    state = model.state_dict()
    for key in report.from_clip_pretrained:
        assert state[key].dtype == torch.float32
        assert torch.equal(state[key], weights[key].half().float())
    assert state["backbone.clip_model.visual.bn1.num_batches_tracked"].dtype == torch.int64
