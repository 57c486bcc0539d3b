"""Shared pytest fixtures: where the official reference data lives."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"


def reference_dir() -> Path:
    """The directory of official reference fixtures (``FCCLIP_REFERENCE_DIR`` overrides)."""
    return Path(os.environ.get("FCCLIP_REFERENCE_DIR", str(DEFAULT_REFERENCE_DIR)))


@pytest.fixture(scope="session")
def reference_root() -> Path:
    """Skip, in one visible line, every test that needs the reference data when it is absent."""
    root = reference_dir()
    if not (root / "README.md").is_file():
        pytest.skip(f"official reference data not found at {root} (set FCCLIP_REFERENCE_DIR)")
    return root
