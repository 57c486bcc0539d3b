"""mIoU / fwIoU / mACC / pACC as detectron2's SemSegEvaluator computes them, by hand."""
from __future__ import annotations

import numpy as np
import pytest

from fcclip_core.evaluation.label_files import write_label_map
from fcclip_core.evaluation.semantic_metrics import ConfusionMatrix, score_semantic_pngs

GT = np.array([[0, 0, 1], [1, 255, 2]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])


def test_hand_computed_metrics_with_ignore_and_an_empty_class():
    matrix = ConfusionMatrix(num_classes=4)
    matrix.add(PRED, GT)
    result = matrix.metrics(["a", "b", "c", "d"])
    # class 0: TP 1, GT 2, predicted 2 -> IoU 1/3, acc 1/2; class 1: TP 2, GT 2, predicted 3 -> 2/3, 1;
    # class 2: only GT (its prediction lies on the ignored pixel, which counts nowhere) -> 0, 0;
    # class 3: neither -> left out of every mean.
    assert result["per_class"]["a"]["IoU"] == pytest.approx(100 / 3)
    assert result["per_class"]["b"]["IoU"] == pytest.approx(200 / 3)
    assert result["per_class"]["c"] == {"IoU": 0.0, "ACC": 0.0}
    assert result["per_class"]["d"] == {"IoU": None, "ACC": None}
    assert result["mIoU"] == pytest.approx(100 / 3)
    assert result["fwIoU"] == pytest.approx(100 * (2 / 5 * 1 / 3 + 2 / 5 * 2 / 3))
    assert result["mACC"] == pytest.approx(50.0)
    assert result["pACC"] == pytest.approx(60.0)


def test_a_class_predicted_but_absent_from_the_ground_truth_is_not_averaged():
    matrix = ConfusionMatrix(num_classes=4)
    matrix.add(np.array([[3, 0]]), np.array([[0, 0]]))
    result = matrix.metrics()
    assert result["per_class"]["3"]["IoU"] is None
    assert result["mIoU"] == pytest.approx(50.0)  # only class 0: TP 1 / (GT 2 + pred 1 - 1)


def test_counts_accumulate_over_images_and_other_ignore_labels():
    matrix = ConfusionMatrix(num_classes=2, ignore_label=65535)
    matrix.add(np.array([[0, 1]]), np.array([[0, 65535]]))
    matrix.add(np.array([[1, 1]]), np.array([[1, 0]]))
    # class 0: TP 1, GT 2, pred 1 -> 1/2; class 1: TP 1, GT 1, pred 2 -> 1/2
    assert matrix.metrics()["mIoU"] == pytest.approx(50.0)
    assert matrix.metrics()["pACC"] == pytest.approx(100 * 2 / 3)


def test_bad_labels_are_refused():
    matrix = ConfusionMatrix(num_classes=2)
    with pytest.raises(ValueError, match="outside 0..1"):
        matrix.add(np.array([[0]]), np.array([[7]]))
    with pytest.raises(ValueError, match="prediction holds labels"):
        matrix.add(np.array([[2]]), np.array([[0]]))
    with pytest.raises(ValueError, match="differ in size"):
        matrix.add(np.zeros((2, 2)), np.zeros((2, 3)))


def test_scores_label_folders_png_and_16bit(tmp_path):
    write_label_map(tmp_path / "gt" / "x.png", GT)
    write_label_map(tmp_path / "pred" / "x.png", PRED)
    write_label_map(tmp_path / "gt" / "y.png", np.array([[600, 600]]))  # 16-bit
    write_label_map(tmp_path / "pred" / "y.png", np.array([[600, 3]]))
    result = score_semantic_pngs(tmp_path / "gt", tmp_path / "pred", 601)
    assert result["images"] == 2
    assert result["per_class"]["600"]["IoU"] == pytest.approx(50.0)
    (tmp_path / "pred" / "y.png").unlink()
    with pytest.raises(ValueError, match="1 image\\(s\\) have no prediction"):
        score_semantic_pngs(tmp_path / "gt", tmp_path / "pred", 601)
