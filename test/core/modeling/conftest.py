"""The tiny official fixture, loaded once per test session for the modeling tests."""
from __future__ import annotations

import pytest
import torch

from fcclip_core.config import model_config_from_reference
from fcclip_core.modeling import build_model


@pytest.fixture(scope="session")
def tiny_dir(reference_root):
    return reference_root / "tiny"


@pytest.fixture(scope="session")
def tiny_expected(tiny_dir):
    return torch.load(tiny_dir / "expected.pt", weights_only=True)


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    return build_model(model_config_from_reference(tiny_dir), weights=tiny_dir / "weights.pth")


def max_abs_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert tuple(actual.shape) == tuple(expected.shape), (tuple(actual.shape), tuple(expected.shape))
    return (actual.float() - expected.float()).abs().max().item()
