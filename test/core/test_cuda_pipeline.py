"""The whole pipeline on a CUDA device against the CPU (skips, visibly, without a GPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fcclip_core.tools.device_parity import (FP32_LOGIT_TOLERANCE, compare_on_fixture, fixture_predictor,
                                             network_outputs)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("fixture", ["tiny", "rn_tiny"])
def test_fp32_on_cuda_decides_exactly_as_the_cpu(reference_root, fixture):
    for row in compare_on_fixture(reference_root, fixture, "cuda", ["fp32"]):
        assert row.identical_discrete, row
        assert row.max_mask_logit_drift <= FP32_LOGIT_TOLERANCE, row
        assert row.max_logprob_drift <= FP32_LOGIT_TOLERANCE, row


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_cuda_mostly_agrees(reference_root, precision):
    for row in compare_on_fixture(reference_root, "tiny", "cuda", [precision]):
        assert row.panoptic_agreement > 0.9, row


def test_native_op_matches_the_reference_on_the_full_model(reference_root, monkeypatch):
    predictor = fixture_predictor(reference_root, "tiny", "cuda", "fp32")
    image = np.load(reference_root / "tiny" / "inputs.npz")["image0_orig_rgb"]
    outputs = {}
    for backend in ("native", "reference"):
        monkeypatch.setenv("FCCLIP_MSDA_BACKEND", backend)
        outputs[backend] = network_outputs(predictor, image)
    for native, reference in zip(outputs["native"], outputs["reference"]):
        torch.testing.assert_close(native, reference, rtol=0, atol=1e-3)


def test_results_come_back_on_the_host(reference_root):
    predictor = fixture_predictor(reference_root, "tiny", "cuda", "bf16")
    image = np.load(reference_root / "tiny" / "inputs.npz")["image0_orig_rgb"]
    result = predictor.predict(image)
    assert isinstance(result.panoptic.segment_ids, np.ndarray)
    assert isinstance(result.instances.masks, np.ndarray) and result.instances.masks.dtype == bool
    assert result.semantic.labels.shape == image.shape[:2]
