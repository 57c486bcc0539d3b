"""Each released model of ours has exactly the official state-dict layout."""
from __future__ import annotations

import json

import pytest
import torch

from fcclip_core.checkpoint import KNOWN_UNUSED_KEYS, load_checkpoint
from fcclip_core.modeling import build_empty_model


RELEASED_MANIFESTS = {  # our config name -> the official manifest, relative to the reference folder
    "convnext_large": "manifest_convnext_large.json",
    "rn50": "rn/manifest_RN50.json",
    "rn101": "rn/manifest_RN101.json",
    "rn50x4": "rn/manifest_RN50x4.json",
    "rn50x16": "rn/manifest_RN50x16.json",
    "rn50x64": "rn/manifest_RN50x64.json",
}


def _manifest(reference_root, name: str) -> dict:
    return json.loads((reference_root / RELEASED_MANIFESTS[name]).read_text())["state_dict"]


@pytest.mark.parametrize("name", sorted(RELEASED_MANIFESTS))
def test_state_dict_maps_one_to_one_onto_the_manifest(reference_root, name):
    manifest = _manifest(reference_root, name)
    model = build_empty_model(name)  # meta device: no download, no parameter memory
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


@pytest.mark.parametrize("name", ["convnext_large", "rn50"])
def test_a_checkpoint_in_the_manifest_layout_loads(reference_root, name):
    manifest = _manifest(reference_root, name)
    dtypes = {"torch.float32": torch.float32, "torch.int64": torch.int64}
    fake = {k: torch.empty(v["shape"], dtype=dtypes[v["dtype"]], device="meta") for k, v in manifest.items()}
    report = load_checkpoint(build_empty_model(name), fake)
    assert report.ok
    assert report.ignored == list(KNOWN_UNUSED_KEYS)
    assert len(report.loaded) == len(manifest) - 1
