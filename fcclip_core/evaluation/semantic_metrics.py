"""Semantic-segmentation metrics exactly as detectron2's SemSegEvaluator computes them.

One confusion matrix of (K+1) x (K+1) counts, rows = predicted class, columns = ground truth,
the last column holding the ignored pixels (so predictions on them count nowhere). From it:
mIoU over classes present in the ground truth, frequency-weighted IoU, mean class accuracy
(mACC) and pixel accuracy (pACC), all in percent.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fcclip_core.evaluation.label_files import read_label_map


class ConfusionMatrix:
    """Accumulates predicted vs ground-truth class counts over images."""

    def __init__(self, num_classes: int, ignore_label: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.counts = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Count one image; ``pred`` and ``gt`` are [H, W] class-index maps of the same size."""
        pred = np.asarray(pred).astype(np.int64, copy=False)
        gt = np.asarray(gt).astype(np.int64)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        k = self.num_classes
        gt[gt == self.ignore_label] = k
        if gt.size and (gt.min() < 0 or gt.max() > k):
            bad = sorted(set(np.unique(gt[(gt < 0) | (gt > k)]).tolist()))[:5]
            raise ValueError(f"ground truth holds labels {bad} outside 0..{k - 1} and the ignore label "
                             f"{self.ignore_label}")
        if pred.size and (pred.min() < 0 or pred.max() >= k):
            bad = sorted(set(np.unique(pred[(pred < 0) | (pred >= k)]).tolist()))[:5]
            raise ValueError(f"prediction holds labels {bad} outside 0..{k - 1}")
        self.counts += np.bincount(((k + 1) * pred + gt).ravel(), minlength=self.counts.size).reshape(self.counts.shape)

    def metrics(self, class_names: Sequence[str] | None = None) -> dict:
        """mIoU, fwIoU, mACC, pACC (percent) and per-class IoU / accuracy (NaN: class absent from the GT)."""
        tp = self.counts.diagonal()[:-1].astype(float)
        pos_gt = self.counts[:-1, :-1].sum(axis=0).astype(float)
        pos_pred = self.counts[:-1, :-1].sum(axis=1).astype(float)
        total = pos_gt.sum()
        acc = np.full(self.num_classes, np.nan)
        iou = np.full(self.num_classes, np.nan)
        acc_valid = pos_gt > 0
        acc[acc_valid] = tp[acc_valid] / pos_gt[acc_valid]
        union = pos_gt + pos_pred - tp
        iou_valid = acc_valid & (union > 0)
        iou[iou_valid] = tp[iou_valid] / union[iou_valid]
        weights = pos_gt / total if total else np.zeros_like(pos_gt)
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        return {
            "mIoU": _percent(iou[iou_valid].mean() if iou_valid.any() else np.nan),
            "fwIoU": _percent((iou[iou_valid] * weights[iou_valid]).sum() if iou_valid.any() else np.nan),
            "mACC": _percent(acc[acc_valid].mean() if acc_valid.any() else np.nan),
            "pACC": _percent(tp.sum() / total if total else np.nan),
            "per_class": {name: {"IoU": _percent(iou[i]), "ACC": _percent(acc[i])} for i, name in enumerate(names)},
        }


def _percent(value: float) -> float | None:
    """100 x value as a JSON-friendly float (None for NaN)."""
    return None if np.isnan(value) else float(100.0 * value)


def score_semantic_pngs(gt_dir: str | Path, pred_dir: str | Path, num_classes: int, *, ignore_label: int = 255,
                        class_names: Sequence[str] | None = None, stems: Sequence[str] | None = None) -> dict:
    """Score a folder of predicted label images against a folder of ground-truth label images.

    Files are paired by name without extension (``.png`` or ``.tif``); every ground-truth file
    needs a prediction unless ``stems`` restricts the images scored.
    """
    gt_files = _label_files(Path(gt_dir))
    pred_files = _label_files(Path(pred_dir))
    wanted = list(stems) if stems is not None else sorted(gt_files)
    if not wanted:
        raise ValueError(f"no label images (.png/.tif) in {gt_dir}")
    missing = [stem for stem in wanted if stem not in pred_files]
    if missing:
        raise ValueError(f"{len(missing)} image(s) have no prediction in {pred_dir}, e.g. {missing[:3]}")
    matrix = ConfusionMatrix(num_classes, ignore_label)
    for stem in wanted:
        if stem not in gt_files:
            raise ValueError(f"no ground truth for {stem!r} in {gt_dir}")
        matrix.add(read_label_map(pred_files[stem]), read_label_map(gt_files[stem]))
    result = matrix.metrics(class_names)
    result["images"] = len(wanted)
    return result


def _label_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValueError(f"not a folder: {folder}")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in (".png", ".tif", ".tiff")}
