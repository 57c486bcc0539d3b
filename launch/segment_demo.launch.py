"""Demo: segment_node on the bundled photos, played as a camera stream, with RViz showing the overlay.

    ros2 launch fcclip_ros segment_demo.launch.py
    ros2 launch fcclip_ros segment_demo.launch.py weights:=/path/to/fcclip_cocopan.pth use_rviz:=false

RViz is skipped with a warning when rviz2 is not installed.

Uses the released model when its weights are found (weights argument, $FCCLIP_WEIGHTS, the cache);
otherwise a tiny UNTRAINED model runs, and the launch log says so: its masks are not results.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, LogInfo, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from fcclip_ros.model_setup import demo_model

SHARE = get_package_share_directory("fcclip_ros")
CAMERA_TOPIC = "/fcclip_demo/image"

ARGUMENTS = (
    ("weights", "", "released checkpoint (empty: $FCCLIP_WEIGHTS, the weights cache, else a tiny untrained model)"),
    ("device", "auto", "auto, cpu, cuda or cuda:N"),
    ("rate", "1.0", "frames per second of the image stream"),
    ("images", os.path.join(SHARE, "demo_images"), "folder of images to play"),
    ("use_rviz", "true", "start RViz with the overlay (skipped with a warning when rviz2 is not installed)"),
    ("autostart", "true", "the segmentation node configures and activates itself; false: a lifecycle manager does"),
    ("use_sim_time", "false", "use the /clock topic for the node's time"),
    ("namespace", "", "namespace of the segmentation node"),
)


def _launch_demo(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    model = demo_model(arg("weights"))
    if model.untrained:
        notice = LogInfo(msg="NO RELEASED WEIGHTS FOUND: running a tiny UNTRAINED model with random weights. "
                             "Its masks are NOT segmentation results. Pass weights:=<checkpoint> for real ones.")
    else:
        notice = LogInfo(msg=model.describe())
    segment = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(SHARE, "launch", "segment.launch.py")),
        launch_arguments={
            "camera_topic": CAMERA_TOPIC,
            "model_config": model.model_config,
            "weights": str(model.weights or ""),
            "allow_untrained": "true" if model.untrained else "false",
            "device": arg("device"),
            # Full-size frames: best-effort DDS drops large samples between processes.
            "image_reliability": "reliable",
            "use_rviz": arg("use_rviz"),
            "autostart": arg("autostart"),
            "use_sim_time": arg("use_sim_time"),
            "namespace": arg("namespace"),
        }.items(),
    )
    player = Node(
        package="fcclip_ros",
        executable="image_player",
        name="image_player",
        parameters=[{"directory": arg("images"), "rate": float(arg("rate")), "loop": True,
                     "wait_for_subscribers": True}],
        remappings=[("image", CAMERA_TOPIC)],
        output="screen",
    )
    return [notice, segment, player]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [OpaqueFunction(function=_launch_demo)]
    )
