"""Files the package ships outside Python: params file, demo images, RViz config.

In a ROS 2 install (colcon) and in the pip-only set-up alike they live in
``<prefix>/share/fcclip_ros``; from a source checkout they are found beside the package.
"""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "fcclip_ros"
_CHECKOUT = Path(__file__).resolve().parents[1]


def _candidates() -> list[Path]:
    found: list[Path] = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            found.append(Path(get_package_share_directory(PACKAGE)))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    found.append(Path(sys.prefix) / "share" / PACKAGE)
    found.append(_CHECKOUT)
    return found


def shared_path(relative: str) -> Path:
    """The first existing ``share/fcclip_ros/<relative>`` (or the checkout's); FileNotFoundError if none."""
    for root in _candidates():
        path = root / relative
        if path.exists():
            return path
    raise FileNotFoundError(f"{relative} not found in {', '.join(str(r) for r in _candidates())}")


def demo_images_dir() -> Path:
    return shared_path("demo_images")


def default_params_file() -> Path:
    return shared_path("config/segment.yaml")
