"""gpu_check: the wheel bookkeeping, and the whole check in its CPU --quick mode (as CI runs it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fcclip_core.tools.gpu_check import find_wheels, required_wheels, unpack_wheels

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_the_wheel_list_pins_every_package():
    pins = required_wheels()
    names = {name.lower() for name, _ in pins}
    assert {"open_clip_torch", "timm", "torchvision", "ftfy", "safetensors", "pytest"} <= names
    assert all(version and version[0].isdigit() for _, version in pins)
    assert "torch" not in names and "numpy" not in names  # the target brings those


def test_missing_wheels_are_listed(tmp_path):
    (tmp_path / "ftfy-6.3.1-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "timm-1.0.30-py3-none-any.whl").write_bytes(b"")  # another version
    found, missing = find_wheels(tmp_path, [("ftfy", "6.3.1"), ("timm", "1.0.31"), ("open_clip_torch", "3.3.0")])
    assert [p.name for p in found] == ["ftfy-6.3.1-py3-none-any.whl"]
    assert missing == ["timm==1.0.31", "open_clip_torch==3.3.0"]


def test_wheels_are_unpacked_onto_the_path(tmp_path, monkeypatch):
    wheel = tmp_path / "gpucheckprobe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("gpucheckprobe/__init__.py", "ANSWER = 42\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    unpack_wheels([wheel], tmp_path / "site")
    import gpucheckprobe

    assert gpucheckprobe.ANSWER == 42
    assert os.environ["PYTHONPATH"].startswith(str(tmp_path / "site"))
    sys.modules.pop("gpucheckprobe")


def test_missing_packages_stop_the_check_at_once(tmp_path):
    """With a package absent and no wheel for it, the check lists it and does nothing else."""
    child = subprocess.run(
        [sys.executable, "-c", "import sys; from importlib import metadata\n"
         "from fcclip_core.tools import gpu_check\n"
         "gpu_check.installed_version = lambda name: None if name == 'timm' else '1'\n"
         "sys.exit(gpu_check.main(sys.argv[1:]))", "--device", "cpu", "--quick",
         "--wheels", str(tmp_path), "--out", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=120)
    assert child.returncode != 0
    assert f"these wheels are not in {tmp_path}:\n  timm==1.0.31" in child.stderr
    assert "pip download --python-version 3.12" in child.stderr
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_quick_cpu_check_runs_every_step(reference_root, tmp_path):
    out = tmp_path / "report.json"
    env = dict(os.environ, PYTHON=sys.executable)
    child = subprocess.run([str(REPO_ROOT / "scripts" / "gpu_check.sh"), "--device", "cpu", "--quick",
                            "--reference", str(reference_root), "--out", str(out)],
                           capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["passed"] and report["quick"]
    steps = report["steps"]
    assert "build" not in steps  # the CPU quick mode does not compile
    assert steps["tests"]["counts"].get("skipped", 0) > 0 and "failed" not in steps["tests"]["counts"]
    rows = steps["parity"]["rows"]
    assert {(r["fixture"], r["precision"]) for r in rows} == {("tiny", "fp32"), ("tiny", "bf16")}
    for row in rows:
        if row["precision"] == "fp32":  # CPU against CPU: the same computation
            assert row["identical_discrete"] and row["max_mask_logit_drift"] == 0.0
        else:
            assert 0.9 < row["panoptic_agreement"] <= 1.0 and row["max_mask_logit_drift"] > 0
    (model,) = steps["bench"]["models"]
    assert model["model"] == "fixture_tiny" and model["vocabulary"]["classes"] == 133
    shapes = {(c["height"], c["width"], c["precision"]) for c in model["cases"]}
    assert shapes == {(128, 128, "fp32"), (128, 128, "bf16"), (96, 128, "fp32"), (96, 128, "bf16")}
    for case in model["cases"]:
        assert case["median_s"]["total"] > 0 and case["peak_gpu_mib"] is None
    assert "COCO vocabulary (133 classes)" in child.stdout and "PASSED" in child.stdout
