"""Precision: how auto decides, autocast really running, float32 where FC-CLIP needs it, and
bf16 results close to fp32 on the official tiny fixture."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fcclip_core.agreement import panoptic_agreement
from fcclip_core.modeling.classification import TextClassifier, classification_logits
from fcclip_core.precision import autocast, cpu_bf16_features, resolve_precision
from fcclip_core.predictor import Predictor


def test_explicit_precisions_are_kept_and_unknown_ones_rejected():
    assert resolve_precision("fp32", "cpu").autocast_dtype is None
    assert resolve_precision("BF16", "cpu").autocast_dtype is torch.bfloat16
    assert resolve_precision("fp16", "cpu").dtype is torch.float16
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_precision("half", "cpu")


@pytest.mark.parametrize("features, chosen", [
    (frozenset(), "fp32"),
    (frozenset({"avx512_bf16"}), "fp32"),  # measured slower than fp32 (README, Precision)
    (frozenset({"avx512_bf16", "amx_bf16"}), "bf16"),
])
def test_auto_on_a_cpu_follows_its_native_bf16(features, chosen):
    resolved = resolve_precision("auto", "cpu", cpu_features=features)
    assert resolved.name == chosen
    assert resolved.reason.startswith("auto: ")


def test_cpu_bf16_features_are_read_from_the_kernel_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert cpu_bf16_features(info) == {"avx512_bf16", "amx_bf16"}
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert cpu_bf16_features(info) == frozenset()
    assert cpu_bf16_features(tmp_path / "absent") == frozenset()


def test_classification_logits_stay_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 7, 16, generator=g)
    rows = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=-1)
    classifier = TextClassifier.build(rows, [2, 1, 2], [True, False, True], torch.randn(1, 16, generator=g))
    scale = torch.tensor(4.6052)  # log(100): the capped CLIP temperature
    want = classification_logits(features, classifier, scale)
    with autocast("cpu", torch.bfloat16):
        got = classification_logits(features.bfloat16(), classifier, scale)
    assert got.dtype is torch.float32
    # only the bf16 rounding of the input features remains (3 significant digits of a cosine
    # times 100), not a bf16 matrix product on top
    assert (got - want).abs().max() < 0.5
    with autocast("cpu", torch.bfloat16):
        exact = classification_logits(features, classifier, scale)
    torch.testing.assert_close(exact, want, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_inputs(reference_root):
    vocab = json.loads((reference_root / "tiny" / "vocab.json").read_text())
    stuff = [i for i, flag in enumerate(vocab["isthing"]) if not flag]
    inputs = np.load(reference_root / "tiny" / "inputs.npz")
    images = [inputs[f"image{i}_orig_rgb"] for i in range(2)]
    return reference_root / "tiny" / "weights.pth", vocab["stuff_classes"], stuff, images


def tiny_predictor(weights, classes, stuff, precision: str) -> Predictor:
    predictor = Predictor.from_config("fixture_tiny", weights, device="cpu", input_short_side=128,
                                      precision=precision)
    predictor.set_vocabulary(classes, stuff=stuff)
    return predictor


def test_bf16_runs_the_network_in_bf16_and_agrees_with_fp32(tiny_inputs):
    weights, classes, stuff, images = tiny_inputs
    fp32 = tiny_predictor(weights, classes, stuff, "fp32")
    bf16 = tiny_predictor(weights, classes, stuff, "bf16")
    seen: dict[str, torch.dtype] = {}
    decoder = bf16.model.sem_seg_head.pixel_decoder

    def record(module, inputs, outputs) -> None:
        seen["mask_features"] = outputs[0].dtype
    handle = decoder.register_forward_hook(record)
    try:
        results = [(fp32.predict(im), bf16.predict(im)) for im in images]
    finally:
        handle.remove()
    assert seen["mask_features"] is torch.bfloat16  # autocast really ran
    for want, got in results:
        assert panoptic_agreement(want.panoptic, got.panoptic) > 0.9
        assert got.semantic.scores.dtype == np.float32
        # semantic scores are sums over queries (up to ~9 here): bf16 moves them by a few percent
        assert np.abs(got.semantic.scores - want.semantic.scores).max() < 0.05 * want.semantic.scores.max()


def test_bf16_forward_keeps_the_probabilities_float32(tiny_inputs):
    weights, classes, stuff, images = tiny_inputs
    predictor = tiny_predictor(weights, classes, stuff, "bf16")
    images_t = torch.zeros(1, 3, 128, 128)
    out = predictor.model(images_t, predictor._current().prepared.classifier, autocast_dtype=torch.bfloat16)
    assert out.pred_masks.dtype is torch.float32
    assert out.pred_logits.dtype is torch.float32
    assert out.out_vocab_logits.dtype is torch.float32
    assert out.mask_cls_logprobs.dtype is torch.float32
    probs = out.mask_cls_logprobs.exp().sum(-1)
    torch.testing.assert_close(probs, torch.ones_like(probs), rtol=0, atol=1e-4)
