"""The parity tool on every official fixture, on a corrupted copy, and its decision rules."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fcclip_core.tools.parity_checks import compare_instances, compare_labels, compare_panoptic, compare_tensor

REPO = Path(__file__).resolve().parents[3]
REFERENCE = Path(os.environ.get("FCCLIP_REFERENCE_DIR", str(REPO.parent / "shared" / "reference")))


def _fixture_dirs() -> list:
    if not REFERENCE.is_dir():
        return ["tiny"]  # the reference_root fixture turns this into one visible skip
    return sorted(p.name for p in REFERENCE.iterdir() if (p / "expected.pt").is_file())


def _marks(name: str) -> list:
    if (REFERENCE / name / "gen_weights.py").is_file():
        return [pytest.mark.slow]  # full-size ConvNeXt-L: weights generated, ~1-2 min
    return []


def _run_parity(path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "fcclip_core.tools.parity", str(path), "--threads", "2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in _fixture_dirs()])
def test_parity_passes_on_every_fixture(reference_root, name):
    result = _run_parity(reference_root / name)
    lines = result.stdout.strip().splitlines()
    assert lines and lines[-1] == "parity: PASS", result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0
    assert not any(line.split("  ")[-1].startswith("FAIL") for line in lines)


def test_parity_fails_on_a_corrupted_copy(reference_root, tmp_path):
    source = reference_root / "tiny"
    copy = tmp_path / "tiny_corrupted"
    copy.mkdir()
    for item in source.iterdir():
        if item.name != "weights.pth":
            (copy / item.name).symlink_to(item)
    weights = torch.load(source / "weights.pth", weights_only=True)
    weights["sem_seg_head.pixel_decoder.mask_features.weight"][0, 0] += 0.05  # one weight
    torch.save(weights, copy / "weights.pth")
    result = _run_parity(copy)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert lines[-1].startswith("parity: FAIL (")
    failed = [line.split()[0] for line in lines if "  FAIL" in line]
    assert "image0/pixel_decoder/mask_features" in failed
    assert all(not name.startswith(("image0/backbone/", "text/")) for name in failed)


def test_a_directory_that_is_no_fixture_exits_with_2(tmp_path):
    result = _run_parity(tmp_path)
    assert result.returncode == 2
    assert "not a reference fixture" in result.stderr


# ----------------------------------------------------------------------------- decision rules


def test_tensor_tolerance_and_shape():
    assert compare_tensor("x", torch.zeros(3), torch.full((3,), 5e-5), 1e-4).ok
    assert not compare_tensor("x", torch.zeros(3), torch.full((3,), 2e-4), 1e-4).ok
    assert not compare_tensor("x", torch.zeros(3), torch.zeros(4), 1e-4).ok
    assert not compare_tensor("x", torch.tensor([float("nan")]), torch.zeros(1), 1e-4).ok


def test_label_flip_is_allowed_only_at_a_float_noise_tie():
    ref = torch.tensor([[[1.0, 2.0]], [[1.0 - 1e-6, 0.0]]])  # pixel 0: near tie; pixel 1: clear
    ours = ref.clone()
    ours[1, 0, 0] += 2e-6  # our scores differ by 2e-6: class 1 now wins pixel 0
    labels = ours.argmax(0).numpy()
    assert compare_labels("sem", labels, ours, ref).ok
    labels[0, 1] = 1  # a flip where the gap is 2.0: unexplained
    result = compare_labels("sem", labels, ours, ref)
    assert not result.ok and result.value == 1


def _logprobs(probs: list) -> torch.Tensor:
    return torch.tensor(probs).log()


def test_panoptic_map_may_differ_only_at_near_ties():
    # two kept queries of class 0 and 1 (void last), one pixel row of 3
    logprobs = _logprobs([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
    ref_masks = torch.tensor([[[5.0, 1e-7, -5.0]], [[-5.0, -1e-7, 5.0]]])
    our_masks = ref_masks.clone()
    our_masks[:, 0, 1] = torch.tensor([-1e-6, 1e-6])
    ref_ids = torch.tensor([[1, 1, 2]])
    segments = [{"id": 1, "isthing": True, "category_id": 0}, {"id": 2, "isthing": True, "category_id": 1}]
    ours_list = [(1, True, 0), (2, True, 1)]
    ok = compare_panoptic("p", np.array([[1, 2, 2]]), ours_list, ref_ids, segments, logprobs, ref_masks,
                          logprobs, our_masks, 0.0)
    assert all(r.ok for r in ok)
    bad = compare_panoptic("p", np.array([[2, 1, 2]]), ours_list, ref_ids, segments, logprobs, ref_masks,
                           logprobs, our_masks, 0.0)
    assert not bad[1].ok
    wrong_segments = compare_panoptic("p", np.array([[1, 1, 2]]), [(1, True, 0)], ref_ids, segments, logprobs,
                                      ref_masks, logprobs, ref_masks, 0.0)
    assert not wrong_segments[0].ok


def test_instance_sets_compare_by_query_and_class():
    logprobs = _logprobs([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1]])
    masks = torch.tensor([[[3.0, -3.0]], [[-3.0, 3.0]]])
    things = torch.tensor([True, True])
    ref = {"pred_masks": torch.tensor([[[True, False]], [[False, True]]]), "scores": torch.tensor([0.5, 0.4]),
           "pred_classes": torch.tensor([0, 1]), "query_index": torch.tensor([0, 1])}
    ours = {"masks": np.array([[[False, True]], [[True, False]]]), "scores": np.array([0.4, 0.5]),
            "classes": np.array([1, 0]), "query_indices": np.array([1, 0]), "class_scores": None}
    results = compare_instances("i", ours, ref, logprobs, masks, logprobs, masks, things, topk=2, score_tol=1e-4)
    assert all(r.ok for r in results), [r.line() for r in results]
    ours["masks"][0, 0, 0] = True  # a pixel with mask logit -3: not noise
    results = compare_instances("i", ours, ref, logprobs, masks, logprobs, masks, things, topk=2, score_tol=1e-4)
    assert not results[-1].ok
    missing = {k: v[:1] for k, v in ours.items() if v is not None}
    results = compare_instances("i", missing, ref, logprobs, masks, logprobs, masks, things, topk=2, score_tol=1e-4)
    assert not results[0].ok
