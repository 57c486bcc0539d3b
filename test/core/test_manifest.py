"""Our ConvNeXt-L model has exactly the released state-dict layout."""
from __future__ import annotations

import json

import torch

from fcclip_core.checkpoint import KNOWN_UNUSED_KEYS, load_checkpoint
from fcclip_core.modeling import build_empty_model


def test_convnext_large_state_dict_maps_one_to_one_onto_the_manifest(reference_root):
    manifest = json.loads((reference_root / "manifest_convnext_large.json").read_text())["state_dict"]
    model = build_empty_model("convnext_large")  # meta device: no download, no memory
    ours = model.state_dict()
    # the only official key we do not hold is the loss's class-weight buffer
    assert set(manifest) - set(ours) == set(KNOWN_UNUSED_KEYS)
    assert set(ours) - set(manifest) == set()
    for key, tensor in ours.items():
        assert list(tensor.shape) == manifest[key]["shape"], key
        assert str(tensor.dtype) == manifest[key]["dtype"], key
    frozen = {k for k, v in manifest.items() if v["group"] == "frozen_clip"}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert frozen.isdisjoint(trainable)
    assert all(k.startswith("backbone.clip_model.") for k in frozen)


def test_a_checkpoint_in_the_manifest_layout_loads(reference_root):
    manifest = json.loads((reference_root / "manifest_convnext_large.json").read_text())["state_dict"]
    fake = {k: torch.empty(v["shape"], device="meta") for k, v in manifest.items()}
    report = load_checkpoint(build_empty_model("convnext_large"), fake)
    assert report.ok
    assert report.ignored == list(KNOWN_UNUSED_KEYS)
    assert len(report.loaded) == len(manifest) - 1
