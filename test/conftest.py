"""Shared pytest fixtures: where the official reference data lives."""
from __future__ import annotations

import os
import random
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


def png_declaring(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header (IHDR, CRC fixed) declares ``width`` x ``height`` pixels:
    the "decompression bomb" that size limits must catch before anything is decoded."""
    import struct
    import zlib

    import cv2
    import numpy as np

    ok, encoded = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    assert ok
    data = bytearray(encoded.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture(scope="session")
def png_bomb():
    """``png_declaring`` for tests in any folder."""
    return png_declaring


def _isolate_dds() -> None:
    """Keep DDS traffic of this test run on loopback and on a domain of its own.

    Every process the tests start inherits this environment, so parallel runs (and a robot
    on the same network) never see each other. FCCLIP_TEST_DOMAIN_ID pins the domain.
    """
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_STATIC_PEERS", None)
    os.environ["ROS_DOMAIN_ID"] = os.environ.get(
        "FCCLIP_TEST_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))


_isolate_dds()
