"""The job path of fcclip-segment imports neither Ray (without --ray) nor ROS (without recordings)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

PROGRAM = """
import sys
from fcclip_core.tools.segment import main
status = main(sys.argv[1:])
print("modules:", "ray" in sys.modules, "rclpy" in sys.modules, "fcclip_ros" in sys.modules)
"""


def test_images_need_neither_ray_nor_ros(reference_root, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(REPO_ROOT / "demo_images" / "coffee.jpg"), "-o", str(tmp_path / "out"),
         "--model-config", "fixture_tiny", "--weights", str(reference_root / "tiny" / "weights.pth"),
         "--short-side", "64", "--vocabulary", "cup", "table", "--stuff", "table"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote results of 1 image(s)" in done.stdout
    assert "modules: False False False" in done.stdout
