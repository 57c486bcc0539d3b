"""Writers of small ROS 2 MCAP recordings for the tests: real CDR (rclpy) and real message definitions."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from mcap.writer import Writer
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from fcclip_ros.bag_schemas import OUTPUT_QOS, complete_definition, type_name
from fcclip_ros.conversions import byte_field, rgb_to_image

REPO_ROOT = Path(__file__).resolve().parents[3]
FRAME_ID = "camera_color_optical_frame"
FX = 400.0  # focal length of camera_info, pixels


def stamp(nanoseconds: int) -> Time:
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def demo_rgb(name: str, width: int) -> np.ndarray:
    bgr = cv2.imread(str(REPO_ROOT / "demo_images" / name), cv2.IMREAD_COLOR)
    height = round(bgr.shape[0] * width / bgr.shape[1])
    return np.ascontiguousarray(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)[:, :, ::-1])


def raw_image(rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> Image:
    return rgb_to_image(rgb, Header(stamp=stamp(stamp_ns), frame_id=frame_id))


def compressed_image(rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> CompressedImage:
    ok, data = cv2.imencode(".png", rgb[:, :, ::-1])
    assert ok
    return CompressedImage(header=Header(stamp=stamp(stamp_ns), frame_id=frame_id), format="rgb8; png compressed bgr8",
                           data=data.tobytes())


def camera_info(width: int, height: int) -> CameraInfo:
    """A pinhole camera of focal length FX centred on the image."""
    info = CameraInfo(width=width, height=height)
    info.header.frame_id = FRAME_ID
    info.k = [FX, 0.0, (width - 1) / 2, 0.0, FX, (height - 1) / 2, 0.0, 0.0, 1.0]
    return info


def depth_image(width: int, height: int, stamp_ns: int, metres: float) -> Image:
    """A 16UC1 depth plane at ``metres``, at half the colour image's resolution."""
    values = np.full((height // 2, width // 2), round(metres * 1000), np.uint16)
    msg = Image(height=height // 2, width=width // 2, encoding="16UC1", step=width // 2 * 2)
    msg.header.frame_id = FRAME_ID
    msg.header.stamp = stamp(stamp_ns)
    msg.data = byte_field(values)
    return msg


def write_recording(path: Path, messages: Iterable[tuple[str, int, object]], profile: str = "ros2") -> Path:
    """An MCAP file of (topic, log time ns, ROS message) as ros2 bag record writes it.

    A message given as (message class, bytes) is stored as those bytes (for malformed data).
    """
    with path.open("wb") as stream:
        writer = Writer(stream)
        writer.start(profile=profile, library="test")
        channels: dict[str, int] = {}
        for topic, log_time, message in messages:
            message_class, data = message if isinstance(message, tuple) else (type(message), None)
            if topic not in channels:
                name = type_name(message_class)
                schema = writer.register_schema(name, "ros2msg", complete_definition(name).encode())
                channels[topic] = writer.register_channel(topic, "cdr", schema, {"offered_qos_profiles": OUTPUT_QOS})
            data = serialize_message(message) if data is None else data
            writer.add_message(channels[topic], log_time=log_time, data=data, publish_time=log_time)
        writer.finish()
    return path
