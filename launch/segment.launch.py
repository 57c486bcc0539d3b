"""Launch the FC-CLIP segmentation node, a lifecycle node (and optionally RViz with the overlay).

    ros2 launch fcclip_ros segment.launch.py camera_topic:=/camera/color/image_raw
    ros2 launch fcclip_ros segment.launch.py params_file:=/path/to/my_segment.yaml namespace:=front
    ros2 launch fcclip_ros segment.launch.py weights:=/path/to/fcclip_cocopan.pth device:=cuda use_rviz:=true
    ros2 launch fcclip_ros segment.launch.py autostart:=false   # a lifecycle manager drives it
    ros2 launch fcclip_ros segment.launch.py camera_topic:=/camera/color/image_raw use_depth:=true \
        depth_topic:=/camera/aligned_depth_to_color/image_raw camera_info_topic:=/camera/color/camera_info

Every node parameter lives in the params file (default: the installed config/segment.yaml); the
few arguments below that mirror parameters override the file only when they are given. With
autostart true (the default) the node configures and activates itself; with false it waits,
unconfigured, for `ros2 lifecycle set` or a lifecycle manager. RViz is skipped with a warning
when rviz2 is not installed.
"""
import os
import shutil

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from ament_index_python.packages import PackageNotFoundError
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

SHARE = get_package_share_directory("fcclip_ros")


def _as_bool(text):
    return text.strip().lower() in ("1", "true", "yes", "on")


# Launch arguments that override a node parameter when non-empty: argument -> (parameter, type, meaning).
PARAMETER_ARGUMENTS = {
    "model_config": ("model_config", str, "shipped model config name or YAML path"),
    "weights": ("weights", str, "checkpoint file"),
    "device": ("device", str, "auto, cpu, cuda or cuda:N"),
    "input_short_side": ("input_short_side", int, "short image side fed to the model"),
    "image_transport": ("image_transport", str, "raw or compressed"),
    "image_reliability": ("image_qos.reliability", str, "input QoS reliability: best_effort or reliable"),
    "allow_untrained": ("allow_untrained", _as_bool, "run with random weights when no checkpoint is found"),
    "autostart": ("autostart", _as_bool, "true: configure and activate at start; false: wait for a lifecycle manager"),
    "use_depth": ("use_depth", _as_bool, "3D outputs from depth_topic and camera_info_topic"),
}

ARGUMENTS = (
    ("camera_topic", "/camera/image_raw",
     "input sensor_msgs/Image topic; with image_transport:=compressed, <camera_topic>/compressed is used"),
    ("depth_topic", "/camera/depth_registered/image_raw",
     "with use_depth: depth image registered to the colour image (16UC1 mm or 32FC1 m)"),
    ("camera_info_topic", "/camera/camera_info", "with use_depth: the colour camera's sensor_msgs/CameraInfo"),
    ("params_file", os.path.join(SHARE, "config", "segment.yaml"), "node parameters (YAML)"),
    ("namespace", "", "namespace of the node (its topics become /<namespace>/segment_node/...)"),
    ("use_sim_time", "false", "use the /clock topic (simulation, bag replay) for the node's time"),
    ("node_name", "segment_node", "name of the node"),
    ("use_rviz", "false", "also start RViz with config/segment.rviz (overlay image, 3D markers, cloud)"),
    ("rviz_config", os.path.join(SHARE, "config", "segment.rviz"), "RViz config file"),
) + tuple((name, "", f"{text} (empty: the params file's value)") for name, (_, _, text) in PARAMETER_ARGUMENTS.items())


def _launch_nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {parameter: convert(arg(name))
                 for name, (parameter, convert, _) in PARAMETER_ARGUMENTS.items() if arg(name)}
    overrides["use_sim_time"] = _as_bool(arg("use_sim_time"))
    camera = arg("camera_topic")
    parameters = [arg("params_file"), overrides]
    actions = [
        LifecycleNode(
            package="fcclip_ros",
            executable="segment_node",
            name=arg("node_name"),
            namespace=arg("namespace"),
            parameters=parameters,
            remappings=[("image", camera), ("image/compressed", camera.rstrip("/") + "/compressed"),
                        ("depth", arg("depth_topic")), ("camera_info", arg("camera_info_topic"))],
            output="screen",
            emulate_tty=True,
        )
    ]
    if _as_bool(arg("use_rviz")):
        if rviz_installed():
            actions.append(Node(package="rviz2", executable="rviz2", name="rviz2",
                                arguments=["-d", arg("rviz_config")], output="screen"))
        else:
            actions.append(LogInfo(msg="WARNING: use_rviz is true but rviz2 is not installed: starting without "
                                       "RViz (install ros-<distro>-rviz2, or pass use_rviz:=false)"))
    return actions


def rviz_installed():
    """True when the rviz2 package (and its executable) can be found."""
    try:
        get_package_share_directory("rviz2")
    except PackageNotFoundError:
        return shutil.which("rviz2") is not None
    return True


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [OpaqueFunction(function=_launch_nodes)]
    )
