"""torch.compile of the network: same results as eager on the tiny fixture (CPU inductor)."""
from __future__ import annotations

import pytest
import torch

from fcclip_core.compilation import compile_network
from fcclip_core.tools.device_parity import (compare_predictors, fixture_images, fixture_predictor,
                                             network_outputs)


def test_unknown_mode_is_rejected(reference_root):
    predictor = fixture_predictor(reference_root, "tiny", "cpu", "fp32")
    with pytest.raises(ValueError, match="unknown compile mode 'fast'"):
        compile_network(predictor.model, "fast")


@pytest.mark.slow
def test_compiled_network_matches_eager(reference_root):
    eager = fixture_predictor(reference_root, "tiny", "cpu", "fp32")
    compiled = fixture_predictor(reference_root, "tiny", "cpu", "fp32")
    compile_network(compiled.model, "default")
    assert hasattr(compiled.model.sem_seg_head.pixel_decoder.__dict__["forward"], "_torchdynamo_orig_callable")
    image = fixture_images(reference_root, "tiny")[0]
    for want, got in zip(network_outputs(eager, image), network_outputs(compiled, image)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    (row,) = compare_predictors(eager, compiled, [image], "tiny")
    assert row.identical_discrete, row
