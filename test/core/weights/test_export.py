"""`fcclip-weights export`: one safetensors file; the real tiny model gives bit-identical outputs
from it and from the original .pth (+ CLIP weights), and its parameters stay memory-mapped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file

from fcclip_core.modeling.build import build_empty_model, build_model
from fcclip_core.tools.weights import main
from fcclip_core.weights import WeightsFileError, WeightsStore, load_weights_into, resolve_weights
from fcclip_core.weights.export import standalone_tensors
from fcclip_core.weights.files import export_metadata

CONFIG = "fixture_tiny"
PROMPTS = ["a photo of a cat", "a photo of grass", "a photo of a dog", "a photo of the sky"]


@pytest.fixture
def imported(weights_env, tmp_path, tiny_weights):
    """The released-like pair in the cache, and where the original files are."""
    ckpt, clip = tmp_path / "fcclip_tiny.pth", tmp_path / "open_clip_model.safetensors"
    ckpt.write_bytes(tiny_weights.checkpoint_bytes())
    clip.write_bytes(tiny_weights.clip_bytes())
    WeightsStore().import_files([ckpt, clip])
    return ckpt, clip


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            start, end = line.split()[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def _run(model, image: torch.Tensor):
    tokens = open_clip.tokenize(PROMPTS)
    with torch.inference_mode():
        text = model.clip_model.encode_text(tokens)
    out = model(image, text, synonym_counts=[1, 1, 1, 1], seen=[True, False, True, False])
    return {"text": text, "pred_masks": out.pred_masks, "pred_logits": out.pred_logits,
            "out_vocab_logits": out.out_vocab_logits, "mask_cls_logprobs": out.mask_cls_logprobs}


def _model_from(resolved):
    model = build_empty_model(CONFIG)
    load_weights_into(model, resolved)
    return model.prepare_for_inference()


def test_export_holds_every_tensor_and_its_provenance(imported, weights_env, tiny_weights, capsys):
    assert main(["export"]) == 0
    path = weights_env / "tiny" / "fcclip_tiny.safetensors"
    assert f"exported tiny: {path}" in capsys.readouterr().out
    meta = export_metadata(path)
    assert meta["model_config"] == CONFIG and meta["model"] == "tiny" and meta["format_version"] == "1"
    sources = json.loads(meta["sources"])
    manifest = json.loads((weights_env / "tiny" / "manifest.json").read_text())["files"]
    assert sources["checkpoint"]["sha256"] == manifest["checkpoint"]["sha256"]
    assert sources["clip"]["sha256"] == manifest["clip"]["sha256"]
    tensors = load_file(str(path))
    expected = {k: v for k, v in tiny_weights.full.items() if k != "criterion.empty_weight"}
    assert set(tensors) == set(expected)
    assert all(torch.equal(tensors[k], v) for k, v in expected.items())
    assert WeightsStore().status().files["export"].state == "complete"
    assert resolve_weights().exported  # the export is preferred once it exists


def test_exported_model_gives_bit_identical_outputs(imported, weights_env, reference_root):
    image = torch.from_numpy(np.load(reference_root / "tiny" / "inputs.npz")["image0_backbone_input"])
    from_pth = resolve_weights()
    assert not from_pth.exported and from_pth.clip is not None
    WeightsStore().export()
    from_export = resolve_weights()
    assert from_export.exported
    a, b = _run(_model_from(from_pth), image), _run(_model_from(from_export), image)
    official = _run(build_model(CONFIG, reference_root / "tiny" / "weights.pth"), image)
    for name in a:
        assert torch.equal(a[name], b[name]), name
        assert torch.equal(a[name], official[name]), name


def test_exported_parameters_are_memory_mapped(imported, weights_env):
    path = WeightsStore().export()
    model = build_empty_model(CONFIG)
    load_weights_into(model, resolve_weights())
    ranges = _mapped_ranges(path)
    assert ranges, "the export is not mapped into this process"
    tensors = list(model.state_dict().values())
    inside = [any(lo <= t.data_ptr() < hi for lo, hi in ranges) for t in tensors]
    assert all(inside), f"{inside.count(False)} of {len(tensors)} tensors were copied out of the file"


def test_export_to_a_chosen_file_from_given_files(weights_env, tmp_path, tiny_weights, capsys):
    ckpt, clip = tmp_path / "a.pth", tmp_path / "b.safetensors"
    ckpt.write_bytes(tiny_weights.checkpoint_bytes())
    clip.write_bytes(tiny_weights.clip_bytes())
    out = tmp_path / "robot" / "fcclip.safetensors"
    assert main(["export", "--checkpoint", str(ckpt), "--clip", str(clip), "--output", str(out)]) == 0
    assert export_metadata(out)["model_config"] == CONFIG
    assert not (out.parent / "fcclip.safetensors.part").exists()
    # an export brought by hand is imported like any other file, and then preferred
    assert main(["import", str(out)]) == 0
    assert resolve_weights().exported


def test_export_without_clip_weights_says_what_is_missing(weights_env, tmp_path, tiny_weights):
    ckpt = tmp_path / "a.pth"
    ckpt.write_bytes(tiny_weights.checkpoint_bytes())
    with pytest.raises(WeightsFileError, match="MISSING 27"):
        WeightsStore().export(checkpoint=ckpt, output=tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_shared_and_strided_tensors_are_made_standalone(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {"tied_a": base, "tied_b": base, "column": base[:, 1], "transposed": base.t(), "slice": base[1]}
    out = standalone_tensors(state)
    assert out["tied_a"] is not None and out["tied_a"].data_ptr() == base.data_ptr()  # untouched
    save_file(out, str(tmp_path / "s.safetensors"))  # would refuse shared or strided tensors
    back = load_file(str(tmp_path / "s.safetensors"))
    for key, value in state.items():
        assert torch.equal(back[key], value), key


def test_a_new_checkpoint_retires_the_export_made_from_the_old_one(imported, weights_env, tmp_path, tiny_weights):
    WeightsStore().export()
    WeightsStore().download(export=True, progress=False)  # complete and up to date: kept as is
    assert WeightsStore().status().files["export"].state == "complete"
    changed = dict(tiny_weights.checkpoint)
    changed["void_embedding.weight"] = changed["void_embedding.weight"] + 1.0
    newer = tmp_path / "retrained.pth"
    torch.save({"model": changed}, newer)
    WeightsStore().import_files([newer])
    assert WeightsStore().status().files["export"].state == "missing"
    assert not (weights_env / "tiny" / "fcclip_tiny.safetensors").exists()
    assert not resolve_weights().exported
