"""Publishes a folder of images as a camera stream (sensor_msgs/Image on `image`), for demos.

    fcclip-image-player --ros-args -p directory:=/path/to/images -p rate:=2.0 -r image:=/camera/image_raw
    ros2 run fcclip_ros image_player --ros-args -p rate:=2.0          (the bundled demo images)

Every frame gets a fresh stamp and the `frame_id` parameter. With `print_frames` the player
prints one JSON line per published frame ({"image": name, "stamp": [sec, nanosec]}), which
lets a recorder tell which picture an output belongs to.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from fcclip_ros import conversions as conv
from fcclip_ros.resources import demo_images_dir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ENCODINGS = ("rgb8", "bgr8")


def list_images(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ValueError(f"image directory not found: {directory}")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    return files


def load_rgb(path: Path, max_side: int) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    longest = max(bgr.shape[:2])
    if max_side and longest > max_side:
        scale = max_side / longest
        bgr = cv2.resize(bgr, (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(bgr[:, :, ::-1])


class ImagePlayer(Node):
    def __init__(self) -> None:
        super().__init__("image_player")
        param = self._param
        directory = param("directory", "", "folder of images; empty: the bundled demo images")
        self._rate = param("rate", 2.0, "frames per second")
        self._loop = param("loop", True, "start over after the last image")
        self._count = param("count", 0, "stop (and exit) after this many frames; 0: no limit")
        self._frame_id = param("frame_id", "camera", "header.frame_id of the frames")
        encoding = param("encoding", "rgb8", "rgb8 or bgr8")
        self._transport = param("transport", "raw", "raw (`image`), compressed (`image/compressed`) or both")
        max_side = param("max_side", 0, "shrink images whose long side exceeds this; 0: keep the size")
        self._wait = param("wait_for_subscribers", False, "start playing once something subscribes")
        self._print = param("print_frames", False, "print a JSON line per published frame")
        if encoding not in ENCODINGS or self._transport not in ("raw", "compressed", "both") or self._rate <= 0:
            raise ValueError(f"invalid parameters: encoding {encoding!r} (rgb8|bgr8), transport "
                             f"{self._transport!r} (raw|compressed|both), rate {self._rate} (> 0)")
        folder = Path(directory).expanduser() if directory else demo_images_dir()
        self._frames = [(p.name, load_rgb(p, max_side)) for p in list_images(folder)]
        self._raw = [conv.byte_field(rgb if encoding == "rgb8" else rgb[:, :, ::-1]) for _, rgb in self._frames]
        self._jpeg = [conv.byte_field(cv2.imencode(".jpg", rgb[:, :, ::-1])[1]) for _, rgb in self._frames]
        self._encoding = encoding
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
        self._image_pub = self.create_publisher(Image, "image", qos) if self._transport != "compressed" else None
        self._compressed_pub = (self.create_publisher(CompressedImage, "image/compressed", qos)
                                if self._transport != "raw" else None)
        self._sent = 0
        self.finished = False
        self.create_timer(1.0 / self._rate, self._tick)
        self.get_logger().info(f"playing {len(self._frames)} images from {folder} at {self._rate:g} Hz")

    def _param(self, name: str, default: Any, description: str) -> Any:
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def _subscribed(self) -> bool:
        return any(pub is not None and pub.get_subscription_count() > 0
                   for pub in (self._image_pub, self._compressed_pub))

    def _tick(self) -> None:
        if self.finished or (self._wait and self._sent == 0 and not self._subscribed()):
            return
        index = self._sent % len(self._frames)
        if (not self._loop and self._sent >= len(self._frames)) or (self._count and self._sent >= self._count):
            self.finished = True
            return
        name, rgb = self._frames[index]
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self._frame_id)
        if self._image_pub is not None:
            msg = Image(header=header, height=rgb.shape[0], width=rgb.shape[1], encoding=self._encoding,
                        step=rgb.shape[1] * 3)
            msg.data = self._raw[index]
            self._image_pub.publish(msg)
        if self._compressed_pub is not None:
            compressed = CompressedImage(header=header, format=f"{self._encoding}; jpeg compressed bgr8")
            compressed.data = self._jpeg[index]
            self._compressed_pub.publish(compressed)
        self._sent += 1
        if self._print:
            print(json.dumps({"image": name, "stamp": [header.stamp.sec, header.stamp.nanosec]}), flush=True)


def main(args: Sequence[str] | None = None) -> int:
    rclpy.init(args=list(sys.argv) if args is None else list(args))
    node = None
    try:
        node = ImagePlayer()
        while rclpy.ok() and not node.finished:
            rclpy.spin_once(node, timeout_sec=0.1)
    except ValueError as error:
        print(f"[image_player] {error}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
