"""One device and precision against CPU float32 on the official fixtures: how far they drift.

For each fixture image both runs see the same preprocessed input. Reported per run: whether
the discrete outputs (panoptic map and segments, semantic labels, instance classes) are
identical, the panoptic agreement (``fcclip_core.agreement``), and the worst drift of the
class log-probabilities and of the mask logits. Used by ``gpu_check`` and the CUDA tests.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from fcclip_core.agreement import panoptic_agreement
from fcclip_core.predictor import Predictor, Result

FIXTURE_CONFIGS = {"tiny": "fixture_tiny", "rn_tiny": "fixture_rn_tiny"}
FIXTURE_SHORT_SIDE = 128  # the fixtures' network input size
# fp32 on another device (TF32 off) may differ from the CPU by summation order only: a few
# float32 ulps per operation, accumulated through the network.
FP32_LOGIT_TOLERANCE = 1e-3


@dataclass
class Comparison:
    fixture: str
    image: int
    device: str
    precision: str
    identical_discrete: bool  # panoptic map, segments, semantic labels, instance classes
    panoptic_agreement: float  # fraction of pixels in the same segment
    semantic_agreement: float  # fraction of pixels with the same semantic label
    max_logprob_drift: float  # max |delta| of class log-probabilities >= log(1e-4) (void included)
    max_mask_logit_drift: float  # max |delta| of the decoder's mask logits


def fixture_predictor(reference_root: Path, fixture: str, device: str, precision: str) -> Predictor:
    """The fixture's model on ``device`` at ``precision`` with the fixture's vocabulary active."""
    if fixture not in FIXTURE_CONFIGS:
        raise ValueError(f"unknown fixture {fixture!r}; choose from {sorted(FIXTURE_CONFIGS)}")
    folder = reference_root / fixture
    vocab = json.loads((folder / "vocab.json").read_text())
    stuff = [i for i, flag in enumerate(vocab["isthing"]) if not flag]
    predictor = Predictor.from_config(FIXTURE_CONFIGS[fixture], folder / "weights.pth", device=device,
                                      input_short_side=FIXTURE_SHORT_SIDE, precision=precision)
    predictor.set_vocabulary(vocab["stuff_classes"], stuff=stuff)
    return predictor


def fixture_images(reference_root: Path, fixture: str) -> list[np.ndarray]:
    inputs = np.load(reference_root / fixture / "inputs.npz")
    return [inputs[key] for key in sorted(inputs.files) if key.endswith("_orig_rgb")]


def network_outputs(predictor: Predictor, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(class log-probabilities, mask logits) of one image, on the CPU in float32."""
    from fcclip_core.preprocess import preprocess_images

    batch = preprocess_images([image], predictor.input_config, predictor.device)
    out = predictor.model(batch.images, predictor._current().prepared.classifier,
                          autocast_dtype=predictor.precision.autocast_dtype)
    return out.mask_cls_logprobs[0].float().cpu(), out.pred_masks[0].float().cpu()


def logprob_drift(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-4) -> float:
    """Max |a - b| of log-probabilities where either probability is at least ``floor``: below
    it, log(p + 1e-8) swings by whole units while the probability changes by nothing."""
    relevant = torch.maximum(a, b) >= np.log(floor)
    return float((a - b).abs()[relevant].max()) if relevant.any() else 0.0


def same_discrete(a: Result, b: Result) -> bool:
    """Whether two results decide the same everything (scores may differ)."""
    pan_a, pan_b = a.panoptic, b.panoptic
    assert pan_a is not None and pan_b is not None and a.semantic and b.semantic and a.instances and b.instances
    segments = [(s.id, s.category_id, s.isthing, s.query_index, s.area) for s in pan_a.segments]
    return (np.array_equal(pan_a.segment_ids, pan_b.segment_ids)
            and segments == [(s.id, s.category_id, s.isthing, s.query_index, s.area) for s in pan_b.segments]
            and np.array_equal(a.semantic.labels, b.semantic.labels)
            and np.array_equal(a.instances.classes, b.instances.classes)
            and np.array_equal(a.instances.query_indices, b.instances.query_indices))


def compare_predictors(baseline: Predictor, candidate: Predictor, images: Sequence[np.ndarray],
                       name: str) -> list[Comparison]:
    """``candidate`` against ``baseline`` (same model and vocabulary) on each image."""
    rows = []
    for index, image in enumerate(images):
        want, got = baseline.predict(image), candidate.predict(image)
        (want_cls, want_masks), (got_cls, got_masks) = network_outputs(baseline, image), network_outputs(candidate, image)
        assert want.panoptic and got.panoptic and want.semantic and got.semantic
        rows.append(Comparison(
            fixture=name, image=index, device=str(candidate.device), precision=candidate.precision.name,
            identical_discrete=same_discrete(want, got),
            panoptic_agreement=panoptic_agreement(want.panoptic, got.panoptic),
            semantic_agreement=float((want.semantic.labels == got.semantic.labels).mean()),
            max_logprob_drift=logprob_drift(want_cls, got_cls),
            max_mask_logit_drift=float((want_masks - got_masks).abs().max())))
    return rows


def compare_on_fixture(reference_root: Path, fixture: str, device: str,
                       precisions: Sequence[str]) -> list[Comparison]:
    """Each precision on ``device`` against fp32 on the CPU, per fixture image."""
    baseline = fixture_predictor(reference_root, fixture, "cpu", "fp32")
    images = fixture_images(reference_root, fixture)
    return [row for precision in precisions for row in compare_predictors(
        baseline, fixture_predictor(reference_root, fixture, device, precision), images, fixture)]


def as_dicts(rows: Sequence[Comparison]) -> list[dict]:
    return [asdict(row) for row in rows]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Agreement of a model at other precisions / on another device with CPU fp32, on photos."""
    from PIL import Image

    from fcclip_core.tools.bench import TEN_CLASSES, TEN_CLASSES_STUFF
    from fcclip_core.tools.gpu_check import format_parity

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model-config", default="convnext_large")
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["bf16"])
    parser.add_argument("--short-side", type=int, default=640, help="network input short side")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in args.images]
    baseline = Predictor.from_config(args.model_config, args.weights, device="cpu",
                                     input_short_side=args.short_side)
    baseline.set_vocabulary(TEN_CLASSES, stuff=TEN_CLASSES_STUFF)
    model = baseline.model
    if args.device != "cpu":
        model = Predictor.from_config(args.model_config, args.weights, device=args.device).model
    rows = []
    for precision in args.precisions:
        candidate = Predictor(model, input_short_side=args.short_side, precision=precision,
                              text_cache=baseline.text_cache if args.device == "cpu" else None)
        candidate.set_vocabulary(baseline.vocabulary)
        rows += compare_predictors(baseline, candidate, photos, "photos")
    print(format_parity({"rows": as_dicts(rows)}))
    for row, path in zip(rows, list(args.images) * len(args.precisions)):
        print(f"image {row.image}: {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
