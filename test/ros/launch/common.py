"""Shared pieces of the launch_testing descriptions: the shipped launch file under test, the tiny
model's arguments, the node's names, and the post-shutdown check that every launched process
exited cleanly."""
from __future__ import annotations

import os
import sys
import unittest
from pathlib import Path

import launch
import launch_testing
import launch_testing.actions
import launch_testing.asserts
from ament_index_python.packages import get_package_share_directory
from launch.launch_description_sources import PythonLaunchDescriptionSource

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/ros: the harness's Peer and helpers
from harness import Peer, change_state, lifecycle_state, wait_until  # noqa: E402,F401

NAMESPACE = "fcclip_launch"
CAMERA = f"/{NAMESPACE}/camera"
TIMEOUT = 120.0


class LaunchedNode:
    """The node started by segment.launch.py, as the harness's lifecycle helpers expect it."""

    fqn = f"/{NAMESPACE}/segment_node"


def shipped_launch(file_name: str, arguments: dict[str, str]) -> launch.LaunchDescription:
    """A test description that includes the installed ``launch/<file_name>`` with ``arguments``."""
    included = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(get_package_share_directory("fcclip_ros"), "launch", file_name)),
        launch_arguments=arguments.items())
    return launch.LaunchDescription([included, launch_testing.actions.ReadyToTest()])


def tiny_model_arguments() -> dict[str, str]:
    """segment.launch.py arguments that run the tiny reference model on the CPU."""
    reference = Path(os.environ["FCCLIP_REFERENCE_DIR"])
    return {"model_config": "fixture_tiny", "weights": str(reference / "tiny" / "weights.pth"), "device": "cpu",
            "namespace": NAMESPACE, "camera_topic": CAMERA, "image_reliability": "reliable"}


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """Imported by every description: all processes exit with status 0 when the launch stops them."""

    def test_processes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
