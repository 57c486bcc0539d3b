"""The launch files under the real launch_testing (`launch_test`), each description in its own process.

The descriptions live in test/ros/launch/ (not collected by pytest: launch_test runs them with
their launch context). They need launch_testing from ../shared/ros-tools and skip visibly
without it.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

LAUNCH_TEST = Path(sys.executable).parent / "launch_test"
DESCRIPTIONS = Path(__file__).resolve().parent / "launch"


# What the launch log must say besides the description's own checks.
LAUNCH_LOG = {"launch_demo_without_rviz.py": "use_rviz is true but rviz2 is not installed: starting without RViz"}


@pytest.mark.parametrize("description", ["launch_autostart.py", "launch_manual.py", "launch_demo_without_rviz.py"])
def test_launch_description(reference_root, tmp_path, description) -> None:
    if not LAUNCH_TEST.is_file():
        pytest.skip(f"launch_testing is not installed ({LAUNCH_TEST} missing; see ../shared/ros-tools)")
    env = {k: v for k, v in os.environ.items() if k != "FCCLIP_WEIGHTS"}
    env["FCCLIP_REFERENCE_DIR"] = str(reference_root)
    env["FCCLIP_WEIGHTS_DIR"] = str(tmp_path / "empty_cache")  # the demo runs the tiny untrained model
    env.setdefault("OMP_NUM_THREADS", "2")
    run = subprocess.run([str(LAUNCH_TEST), str(DESCRIPTIONS / description)], capture_output=True, text=True,
                         timeout=600, env=env, cwd=tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "Traceback" not in output, output[-6000:]
    assert LAUNCH_LOG.get(description, "") in output
