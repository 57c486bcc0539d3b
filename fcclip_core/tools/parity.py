"""Parity of our FC-CLIP against the official implementation's recorded outputs.

    python -m fcclip_core.tools.parity <fixture-dir> [--threads N] [--device cpu|cuda]

The fixture directory is one of the official reference formats (see ``reference_fixture``):
the model is built from the fixture's own config and weights, the vocabulary is encoded by our
text tower, every image goes through our preprocessing, network and post-processing, and each
recorded output is compared. One line per output (name, max abs error or unexplained
differences, tolerance, OK/FAIL), then ``parity: PASS`` or ``parity: FAIL (<n> outputs)``.
Exit status: 0 pass, 1 fail, 2 not a usable fixture directory.

Tolerances
- tiny format (small model, float32): 1e-4 absolute on every continuous tensor (the official
  float noise there is ~1e-5, ``sensitivity.json``).
- large format (ConvNeXt-L): the official code's own noise floor (``sensitivity.json``: the same
  run with 1 thread instead of 2) times SAFETY_FACTOR = 10 for logits and mask logits; semantic
  scores the larger of 10x their noise and a quarter of the mask tolerance (one query's masks
  moving by it); 1e-4 for features (no noise measurement exists for them). The factor covers a
  decoder attention-mask decision taken within float noise of its threshold, which moves that
  one query's mask logits by ~1e-3 (as the 1-vs-2-thread run itself shows).
- Preprocessing: the resized image bit-exact, the normalised input within 1e-6.
- Discrete outputs (semantic argmax, panoptic segments and map, instance set and masks):
  identical except where the decision is within float noise of its threshold, judged from the
  official margins and our measured errors (see ``parity_checks``).
- When a tiny fixture's ``fragility.json`` shows a decision inside the network within
  DECISION_NOISE of its threshold, that image's downstream tensors get the relaxed
  FRAGILE_TOLERANCE (a flip there legitimately moves them).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from fcclip_core.modeling import build_model
from fcclip_core.ops import active_backend as ms_deform_attn_backend
from fcclip_core.modeling.backbone import UnsupportedBackboneError
from fcclip_core.postprocess import PostprocessConfig, mask_logits_to_image, postprocess
from fcclip_core.tools.reference_postprocess import reference_semantic_inference
from fcclip_core.preprocess import preprocess_images, resize_shortest_edge
from fcclip_core.text_embeddings import TextEmbeddingCache
from fcclip_core.tools.parity_checks import (
    CheckResult,
    compare_exact,
    compare_instances,
    compare_labels,
    compare_panoptic,
    compare_tensor,
    decoder_decision_margins,
)
from fcclip_core.tools.reference_fixture import (
    WHOLE_OUTPUTS,
    FixtureError,
    ReferenceFixture,
    ReferenceImage,
    flatten_outputs,
    load_fixture,
)
from fcclip_core.vocabulary import parse_vocabulary

TINY_TOLERANCE = 1e-4
INPUT_TOLERANCE = 1e-6
SAFETY_FACTOR = 10.0
DECISION_NOISE = 2e-5
FRAGILE_TOLERANCE = 1e-2
SIGMOID_SLOPE = 0.25  # max d sigmoid / dx: a mask-logit error moves a mask probability by at most 1/4 of it

MASK_OUTPUTS = {"decoder/pred_masks", "decoder/aux_pred_masks", "mask_for_pooling", "mask_pred_final"}
LOGIT_OUTPUTS = {
    "decoder/pred_logits", "decoder/aux_pred_logits", "out_vocab_logits_with_void", "in_vocab_probs",
    "out_vocab_probs", "ensemble_cls_results", "is_void_prob", "mask_cls_probs", "mask_cls_final_logprobs",
    "valid_masking",
}


@dataclass(frozen=True)
class Tolerances:
    feature: float
    logit: float
    mask: float
    semantic: float

    @property
    def score(self) -> float:
        """Instance scores = class probability x mean mask probability."""
        return self.logit + SIGMOID_SLOPE * self.mask

    def for_output(self, name: str) -> float:
        if name in MASK_OUTPUTS:
            return self.mask
        if name in LOGIT_OUTPUTS:
            return self.logit
        if name == "sem_seg":
            return self.semantic
        return self.feature

    def relaxed(self) -> "Tolerances":
        return Tolerances(self.feature, max(self.logit, FRAGILE_TOLERANCE), max(self.mask, FRAGILE_TOLERANCE),
                          max(self.semantic, FRAGILE_TOLERANCE))


def fixture_tolerances(fixture: ReferenceFixture) -> Tolerances:
    if fixture.format == "tiny":
        return Tolerances(TINY_TOLERANCE, TINY_TOLERANCE, TINY_TOLERANCE, TINY_TOLERANCE)
    noise = fixture.sensitivity or {}
    try:
        mask = SAFETY_FACTOR * float(noise["pred_masks_max_abs"])
        return Tolerances(
            feature=TINY_TOLERANCE,
            logit=SAFETY_FACTOR * float(noise["pred_logits_max_abs"]),
            mask=mask,
            # a semantic score sums class probability x mask probability over queries: one query whose
            # mask logits move by the mask tolerance moves it by up to a quarter of that
            semantic=max(SAFETY_FACTOR * float(noise["sem_seg_max_abs"]), SIGMOID_SLOPE * mask),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise FixtureError(f"{fixture.path}/sensitivity.json lacks the noise floor {exc}") from None


# ----------------------------------------------------------------------------- one image


def check_image(
    model, fixture: ReferenceFixture, image: ReferenceImage, classifier, tol: Tolerances, fragility: Optional[dict],
) -> List[CheckResult]:
    prefix = image.name
    cfg = model.config
    results: List[CheckResult] = []
    margin = decoder_decision_margins(fragility)
    if margin is not None and margin < DECISION_NOISE:
        tol = tol.relaxed()
        print(f"{prefix}: a decision inside the network is within {margin:.1e} of its threshold (fragility.json); "
              f"downstream tolerances relaxed to {FRAGILE_TOLERANCE:g}")

    # preprocessing
    if image.model_input_rgb is not None and cfg.input.min_size_test is not None:
        resized = resize_shortest_edge(image.original_rgb, cfg.input.min_size_test, cfg.input.max_size_test)
        results.append(compare_exact(f"{prefix}/model_input_rgb", resized, image.model_input_rgb))
    batch = preprocess_images([image.original_rgb], cfg.input)
    if image.backbone_input is not None and "backbone_input" not in image.expected:
        results.append(compare_tensor(f"{prefix}/backbone_input", batch.images, image.backbone_input, INPUT_TOLERANCE))

    # network
    out = model(batch.images.to(model.void_embedding.weight.device), classifier, return_intermediates=True)
    margins = out.intermediates.get("decoder_attention_margins", [])
    if margins:
        layer, (closest, query) = min(enumerate(margins), key=lambda item: item[1][0])
        print(f"{prefix}: closest decoder attention decision: |mask logit| {closest:.1e} (layer {layer}, "
              f"query {query}); below ~1e-5 that query's later outputs may legitimately differ")
    ours = {name: value.cpu() for name, value in flatten_outputs(out.intermediates).items()}
    ours["backbone_input"] = batch.images
    expected = image.expected
    for name, ref in expected.items():
        if name in WHOLE_OUTPUTS or name in ("sem_seg", "mask_pred_final"):
            continue
        if name not in ours:
            results.append(CheckResult(f"{prefix}/{name}", False, float("inf"), 0, detail="not produced by our model"))
            continue
        limit = INPUT_TOLERANCE if name == "backbone_input" else tol.for_output(name)
        results.append(compare_tensor(f"{prefix}/{name}", ours[name], ref, limit))

    # post-processing (batch of one image)
    padded, resized_hw, original_hw = batch.padded_size, batch.image_sizes[0], batch.original_sizes[0]
    logprobs, masks_low = out.mask_cls_logprobs[0].cpu(), out.pred_masks[0].cpu()
    our_final = mask_logits_to_image(masks_low, padded, resized_hw, original_hw)
    if "mask_pred_final" in expected:
        ref_final = expected["mask_pred_final"]
        results.append(compare_tensor(f"{prefix}/mask_pred_final", our_final, ref_final, tol.mask))
    else:  # the official resize of the recorded low-resolution masks
        ref_final = mask_logits_to_image(expected["decoder/pred_masks"][0], padded, resized_hw, original_hw)
    ref_logprobs = expected["mask_cls_final_logprobs"][0]
    our_sem = reference_semantic_inference(logprobs, our_final)
    if "sem_seg" in expected:
        results.append(compare_tensor(f"{prefix}/sem_seg", our_sem, expected["sem_seg"], tol.semantic))

    inf = cfg.inference
    things = torch.tensor(fixture.isthing)
    labels = [c.split(",")[0] for c in fixture.classes]
    semantic, panoptic, instances = postprocess(
        logprobs, masks_low, padded, resized_hw, original_hw, things, labels,
        PostprocessConfig(object_mask_threshold=inf.object_mask_threshold, overlap_threshold=inf.overlap_threshold,
                          topk_per_image=inf.detections_per_image))
    if "sem_seg" in expected:
        results.append(compare_labels(f"{prefix}/sem_seg_argmax", semantic.labels, our_sem, expected["sem_seg"]))
    if "panoptic_seg" in expected:
        results += compare_panoptic(
            f"{prefix}/panoptic", panoptic.segment_ids,
            [(s.id, s.isthing, s.category_id) for s in panoptic.segments],
            expected["panoptic_seg"], expected.get("segments_info", []), ref_logprobs, ref_final, logprobs, our_final,
            inf.object_mask_threshold)
    if "instances" in expected:
        ours_inst = {"masks": instances.masks, "scores": instances.scores, "classes": instances.classes,
                     "query_indices": instances.query_indices, "class_scores": instances.class_scores}
        results += compare_instances(
            f"{prefix}/instances", ours_inst, expected["instances"], ref_logprobs, ref_final, logprobs, our_final,
            things, inf.detections_per_image, tol.score)
    return results


# ----------------------------------------------------------------------------- whole fixture


def check_text(fixture: ReferenceFixture, embeddings, tol: Tolerances) -> List[CheckResult]:
    results = [compare_exact("text/synonym_counts", np.asarray(embeddings.synonym_counts),
                             fixture.text["synonym_counts"].numpy()),
               compare_exact("text/seen", embeddings.seen.bool().cpu().numpy(), np.asarray(fixture.seen))]
    if "text_classifier" in fixture.text:
        results.append(compare_tensor("text/text_classifier", embeddings.embeddings.cpu(),
                                      fixture.text["text_classifier"], tol.feature))
    return results


def count_recorded_outputs(fixture: ReferenceFixture) -> int:
    return sum(len(image.expected) for image in fixture.images) + len(fixture.text)


def run_parity(fixture: ReferenceFixture, out=sys.stdout, device: str = "cpu") -> int:
    """Check the fixture; print the report; return the number of failed outputs."""
    for note in fixture.notes:
        print(f"fixture: {note}", file=out)
    print(f"device {device}; deformable attention: {ms_deform_attn_backend(device)} path; "
          f"torch threads: {torch.get_num_threads()}", file=out)
    tol = fixture_tolerances(fixture)
    try:
        model = build_model(fixture.config, weights=fixture.load_weights(), device=device)
    except UnsupportedBackboneError as exc:
        print(f"ERROR: cannot build the fixture's model: {exc}", file=out)
        return count_recorded_outputs(fixture)
    vocabulary = parse_vocabulary(fixture.classes, isthing=fixture.isthing, allow_duplicate_labels=True)
    embeddings = TextEmbeddingCache(model.clip_model).embed(vocabulary)
    results = check_text(fixture, embeddings, tol)
    classifier = model.text_classifier(embeddings.embeddings, embeddings.synonym_counts, embeddings.seen)
    for index, image in enumerate(fixture.images):
        fragility = fixture.fragility[index] if fixture.fragility and index < len(fixture.fragility) else None
        results += check_image(model, fixture, image, classifier, tol, fragility)
    for result in results:
        print(result.line(), file=out)
    return sum(1 for r in results if not r.ok)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fcclip_core.tools.parity",
        description="Compare our FC-CLIP with the official implementation's recorded outputs.")
    parser.add_argument("fixture", help="a reference fixture directory (e.g. ../shared/reference/tiny)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="where the model runs (cpu, cuda, cuda:N)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available on this machine")
    except RuntimeError as exc:
        print(f"error: --device {args.device}: {exc}", file=sys.stderr)
        return 2
    try:
        fixture = load_fixture(args.fixture)
    except FixtureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = run_parity(fixture, device=args.device)
    print("parity: PASS" if failed == 0 else f"parity: FAIL ({failed} outputs)")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
