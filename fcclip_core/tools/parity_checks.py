"""Comparison rules of the parity tool: continuous tensors against a tolerance, discrete
decisions (argmax labels, panoptic segments, instance sets) exactly, except where a decision
lies within float noise of its threshold.

"Within float noise" is measured, not guessed: our continuous inputs of a decision differ from
the official ones by at most the measured error e (checked against its own tolerance), so a
decision may legitimately flip only where the official margin is at most the error that can
reach it, e.g. an argmax between a and b only where ref[a] - ref[b] <= e_a + e_b, a mask
binarised at 0 only where |ref logit| <= e. Any other difference is a bug.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class CheckResult:
    name: str
    ok: bool
    value: float  # max abs error ("abs") or number of unexplained differences ("count")
    tolerance: float
    kind: str = "abs"
    detail: str = ""

    def line(self) -> str:
        verdict = "OK" if self.ok else "FAIL"
        if self.kind == "abs":
            text = f"{self.name:<48} max_abs_err {self.value:.3e}  tol {self.tolerance:.1e}  {verdict}"
        else:
            text = f"{self.name:<48} {int(self.value)} unexplained differences  {verdict}"
        return f"{text}  ({self.detail})" if self.detail else text


def compare_tensor(name: str, ours: torch.Tensor, ref: torch.Tensor, tol: float) -> CheckResult:
    ours, ref = torch.as_tensor(ours), torch.as_tensor(ref)
    if tuple(ours.shape) != tuple(ref.shape):
        return CheckResult(name, False, float("inf"), tol, detail=f"shape {tuple(ours.shape)} != {tuple(ref.shape)}")
    if ours.numel() == 0:
        return CheckResult(name, True, 0.0, tol, detail="empty")
    err = (ours.double() - ref.double()).abs()
    finite = torch.isfinite(ours.double()).all() and torch.isfinite(ref.double()).all()
    value = float(err.max()) if finite else float("inf")
    return CheckResult(name, bool(finite) and value <= tol, value, tol)


def compare_exact(name: str, ours: np.ndarray, ref: np.ndarray) -> CheckResult:
    ours, ref = np.asarray(ours), np.asarray(ref)
    if ours.shape != ref.shape:
        return CheckResult(name, False, float("inf"), 0.0, kind="count", detail=f"shape {ours.shape} != {ref.shape}")
    differing = int((ours != ref).sum())
    return CheckResult(name, differing == 0, differing, 0, kind="count", detail="bit-exact required")


# ----------------------------------------------------------------------------- argmax labels


def compare_labels(name: str, our_labels: np.ndarray, our_scores: torch.Tensor, ref_scores: torch.Tensor) -> CheckResult:
    """Per-pixel argmax over classes ([K, H, W] scores): differences only at near-ties."""
    ref_labels = ref_scores.argmax(0)
    ours = torch.as_tensor(np.asarray(our_labels)).long()
    if tuple(ours.shape) != tuple(ref_labels.shape):
        return CheckResult(name, False, float("inf"), 0, kind="count", detail="shape mismatch")
    diff = ours != ref_labels
    per_class_err = (our_scores.double() - ref_scores.double()).abs().flatten(1).amax(1)
    if not diff.any():
        return CheckResult(name, True, 0, 0, kind="count", detail="identical")
    k_ref, k_our = ref_labels[diff], ours[diff]
    ys, xs = diff.nonzero(as_tuple=True)
    gap = ref_scores[k_ref, ys, xs].double() - ref_scores[k_our, ys, xs].double()
    explained = gap <= per_class_err[k_ref] + per_class_err[k_our]
    bad = int((~explained).sum())
    return CheckResult(name, bad == 0, bad, 0, kind="count",
                       detail=f"{int(diff.sum())} pixels differ, {int(explained.sum())} at float-noise ties")


# ----------------------------------------------------------------------------- panoptic


def _kept_queries(logprobs: torch.Tensor, threshold: float):
    probs = F.softmax(logprobs.double(), dim=-1)
    scores, classes = probs.max(-1)
    keep = classes.ne(probs.shape[-1] - 1) & (scores > threshold)
    return keep, scores


def compare_panoptic(
    name: str,
    our_ids: np.ndarray,
    our_segments: Sequence[tuple],
    ref_ids: torch.Tensor,
    ref_segments: Sequence[dict],
    ref_logprobs: torch.Tensor,
    ref_masks: torch.Tensor,
    our_logprobs: torch.Tensor,
    our_masks: torch.Tensor,
    object_mask_threshold: float,
) -> List[CheckResult]:
    """Segments (id, isthing, category) identical; the id map differs only at pixels whose owner
    (argmax of score x mask probability) or whose mask test (probability >= 0.5) is a float-noise
    decision. ``*_masks`` are full-resolution mask logits [Q, H, W]."""
    ref_list = [(int(s["id"]), bool(s["isthing"]), int(s["category_id"])) for s in ref_segments]
    our_list = [tuple(s) for s in our_segments]
    seg_ok = ref_list == our_list
    results = [CheckResult(f"{name}/segments_info", seg_ok, 0 if seg_ok else 1, 0, kind="count",
                           detail=f"{len(our_list)} segments" + ("" if seg_ok else f", expected {ref_list}, got {our_list}"))]
    ours = torch.as_tensor(np.asarray(our_ids)).long()
    ref = torch.as_tensor(ref_ids).long()
    if ours.shape != ref.shape:
        results.append(CheckResult(f"{name}/panoptic_seg", False, float("inf"), 0, kind="count", detail="shape mismatch"))
        return results
    diff = ours != ref
    if not diff.any():
        results.append(CheckResult(f"{name}/panoptic_seg", True, 0, 0, kind="count", detail="identical"))
        return results
    keep, ref_scores = _kept_queries(ref_logprobs, object_mask_threshold)
    _, our_scores = _kept_queries(our_logprobs, object_mask_threshold)
    ref_m, our_m = ref_masks[keep].double(), our_masks[keep].double()
    ref_prob = ref_scores[keep].view(-1, 1, 1) * ref_m.sigmoid()
    our_prob = our_scores[keep].view(-1, 1, 1) * our_m.sigmoid()
    prob_err = (our_prob - ref_prob).abs().flatten(1).amax(1)
    logit_err = (our_m - ref_m).abs().flatten(1).amax(1)
    ys, xs = diff.nonzero(as_tuple=True)
    ref_owner = ref_prob[:, ys, xs].argmax(0)
    our_owner = our_prob[:, ys, xs].argmax(0)
    gap = ref_prob[ref_owner, ys, xs] - ref_prob[our_owner, ys, xs]
    owner_tie = (ref_owner != our_owner) & (gap <= prob_err[ref_owner] + prob_err[our_owner])
    mask_tie = (ref_m[ref_owner, ys, xs].abs() <= logit_err[ref_owner]) | (
        ref_m[our_owner, ys, xs].abs() <= logit_err[our_owner])
    explained = owner_tie | mask_tie
    bad = int((~explained).sum())
    results.append(CheckResult(f"{name}/panoptic_seg", bad == 0, bad, 0, kind="count",
                               detail=f"{int(diff.sum())} pixels differ, {int(explained.sum())} at float-noise decisions"))
    return results


# ----------------------------------------------------------------------------- instances


def _topk_boundary(scores: torch.Tensor, k: int) -> float:
    flat = scores.flatten()
    k = min(k, flat.numel())
    return float(flat.topk(k).values[-1])


def reference_instance_keys(
    ref_instances: Dict[str, torch.Tensor], ref_class_probs: torch.Tensor, ref_masks: torch.Tensor,
    thing_mask: torch.Tensor, topk: int,
) -> List[tuple]:
    """(query, class) of each recorded instance when the fixture does not record the query:
    among the official top-k thing candidates of its class, the query whose binarised mask
    overlaps the recorded mask best."""
    if "query_index" in ref_instances:
        return list(zip(ref_instances["query_index"].tolist(), ref_instances["pred_classes"].tolist()))
    num_classes = ref_class_probs.shape[1]
    k = min(topk, ref_class_probs.numel())
    top = ref_class_probs.flatten().topk(k).indices
    candidates = {(int(i) // num_classes, int(i) % num_classes) for i in top if thing_mask[int(i) % num_classes]}
    binary = (ref_masks > 0).flatten(1).float()  # [Q, HW]
    masks = ref_instances["pred_masks"].flatten(1).float()  # [N, HW]
    inter = binary @ masks.T  # [Q, N]
    union = binary.sum(1, keepdim=True) + masks.sum(1)[None] - inter
    iou = inter / union.clamp(min=1)
    keys = []
    for n, cls in enumerate(ref_instances["pred_classes"].tolist()):
        queries = [q for q, c in candidates if c == cls]
        if not queries:
            keys.append((-1, cls))
            continue
        best = max(queries, key=lambda q: float(iou[q, n]))
        keys.append((best, cls))
    return keys


def compare_instances(
    name: str,
    ours: Dict[str, np.ndarray],
    ref: Dict[str, torch.Tensor],
    ref_logprobs: torch.Tensor,
    ref_masks: torch.Tensor,
    our_logprobs: torch.Tensor,
    our_masks: torch.Tensor,
    thing_mask: torch.Tensor,
    topk: int,
    score_tol: float,
) -> List[CheckResult]:
    """Instances compared as a set keyed by (query, class): the set identical except candidates
    at a float-noise top-k boundary, matched scores within ``score_tol``, matched masks differing
    only where the mask logit is within float noise of 0. ``ours``: masks, scores, classes,
    query_indices (, class_scores)."""
    ref_probs = F.softmax(ref_logprobs.double(), dim=-1)[:, :-1]
    our_probs = F.softmax(our_logprobs.double(), dim=-1)[:, :-1]
    ref_keys = reference_instance_keys(ref, ref_probs, ref_masks, thing_mask, topk)
    our_keys = list(zip(np.asarray(ours["query_indices"]).tolist(), np.asarray(ours["classes"]).tolist()))
    ref_index = {key: i for i, key in enumerate(ref_keys)}
    our_index = {key: i for i, key in enumerate(our_keys)}
    prob_err = float((our_probs - ref_probs).abs().max())
    boundary = _topk_boundary(ref_probs, topk)
    unmatched = sorted(set(ref_keys) ^ set(our_keys))
    at_boundary = [key for key in unmatched
                   if key[0] >= 0 and abs(float(ref_probs[key[0], key[1]]) - boundary) <= 2 * prob_err]
    bad_set = len(unmatched) - len(at_boundary)
    results = [CheckResult(
        f"{name}/set", bad_set == 0, bad_set, 0, kind="count",
        detail=f"{len(our_keys)} instances, expected {len(ref_keys)}; {len(unmatched)} unmatched, "
               f"{len(at_boundary)} at a float-noise top-{topk} boundary")]

    matched = [key for key in ref_keys if key in our_index]
    if matched:
        ours_scores = torch.tensor([float(ours["scores"][our_index[k]]) for k in matched])
        ref_scores = torch.stack([ref["scores"][ref_index[k]] for k in matched]).float()
        results.append(compare_tensor(f"{name}/scores", ours_scores, ref_scores, score_tol))
        if "class_score" in ref and ours.get("class_scores") is not None:
            ours_cls = torch.tensor([float(ours["class_scores"][our_index[k]]) for k in matched])
            ref_cls = torch.stack([ref["class_score"][ref_index[k]] for k in matched]).float()
            results.append(compare_tensor(f"{name}/class_score", ours_cls, ref_cls, score_tol))
        differing = explained = 0
        for key in matched:
            q = key[0]
            our_mask = torch.as_tensor(np.asarray(ours["masks"][our_index[key]]))
            ref_mask = ref["pred_masks"][ref_index[key]].bool()
            diff = our_mask != ref_mask
            if diff.any():
                noise = float((our_masks[q].double() - ref_masks[q].double()).abs().max())
                differing += int(diff.sum())
                explained += int((ref_masks[q][diff].double().abs() <= noise).sum())
        bad = differing - explained
        results.append(CheckResult(f"{name}/pred_masks", bad == 0, bad, 0, kind="count",
                                   detail=f"{differing} pixels differ, {explained} with |mask logit| within float noise"))
    return results


def decoder_decision_margins(fragility: Optional[dict]) -> Optional[float]:
    """Smallest official margin of a decision inside the network (decoder attention masks,
    decoder mask pooling, out-of-vocabulary pooling), from a fixture's fragility record."""
    if not fragility:
        return None
    margins = []
    for key, value in fragility.items():
        if "attn_mask_logit" in key or "decoder_pred_mask_logit" in key or "mask_for_pooling_logit" in key:
            margins.extend(value if isinstance(value, list) else [value])
    return min(margins) if margins else None
