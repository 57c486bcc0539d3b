"""Test harness for the node tests: the node as a real process, and a ROS peer inside the test.

``NodeProcess`` starts the installed console script ``fcclip-segment-node`` (as a user would),
with the shipped params file and the tiny model. ``Peer`` is an rclpy node in the test process
(own executor thread) that publishes frames, collects outputs by stamp and calls services.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = REPO_ROOT / "config" / "segment.yaml"
DEMO_IMAGES = REPO_ROOT / "demo_images"
NODE_SCRIPT = Path(sys.executable).parent / "fcclip-segment-node"

RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
# Transient-local reader of latched topics; its depth keeps every change even if the test lags.
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)

# A small vocabulary keeps the text encoder fast; stuff entries exercise the thing/stuff split.
TEST_CLASSES = ["person, man, woman", "cat, kitten", "cup, mug", "rocket", "sky", "floor, ground", "wall"]
TEST_STUFF = ["sky", "floor", "wall"]


def demo_rgb(name: str, width: int = 320) -> np.ndarray:
    """A bundled demo photo as RGB, scaled to ``width`` pixels wide."""
    bgr = cv2.imread(str(DEMO_IMAGES / name), cv2.IMREAD_COLOR)
    height = round(bgr.shape[0] * width / bgr.shape[1])
    return np.ascontiguousarray(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)[:, :, ::-1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def ros_list(values: list[Any]) -> str:
    """A string array for `-p name:=...` on the command line."""
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


class NodeProcess:
    """``fcclip-segment-node`` as a child process with the tiny model; stderr kept in a file."""

    def __init__(self, reference_root: Path, log_dir: Path, namespace: str, params: dict[str, str] | None = None,
                 env: dict[str, str] | None = None, tiny_model: bool = True, params_file: Path = PARAMS_FILE,
                 test_vocabulary: bool = True) -> None:
        self.namespace = namespace
        self.fqn = f"{namespace}/segment_node"
        args = [str(NODE_SCRIPT), "--ros-args", "-r", f"__ns:={namespace}", "--params-file", str(params_file)]
        defaults = {"device": "cpu"}
        if test_vocabulary:
            defaults.update(vocabulary=ros_list(TEST_CLASSES), vocabulary_stuff=ros_list(TEST_STUFF))
        if tiny_model:
            defaults.update(model_config="fixture_tiny", weights=str(reference_root / "tiny" / "weights.pth"))
        for name, value in {**defaults, **(params or {})}.items():
            args += ["-p", f"{name}:={value}"]
        self.args = args
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{namespace.strip('/')}.out"
        self.stderr_path = log_dir / f"{namespace.strip('/')}.err"
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("OMP_NUM_THREADS", "2")
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=child_env,
                                            start_new_session=True)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"node did not exit within {timeout:g} s; stderr:\n{self.stderr[-3000:]}") from None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.alive():
            self.process.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()


class Collector:
    """Messages of one topic, kept in arrival order, with waiting helpers."""

    def __init__(self, node: Node, msg_type: Any, topic: str, qos: QoSProfile = RELIABLE) -> None:
        self._cond = threading.Condition()
        self.messages: list[Any] = []
        self.subscription = node.create_subscription(msg_type, topic, self._on_message, qos)

    def _on_message(self, msg: Any) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def snapshot(self) -> list[Any]:
        with self._cond:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float, what: str) -> Any:
        """The first message matching ``predicate`` (waiting for it)."""
        def find() -> Any:
            return next((m for m in self.snapshot() if predicate(m)), None)

        return wait_until(find, timeout, what)

    def for_stamp(self, stamp: tuple[int, int], timeout: float) -> Any:
        return self.wait_for(lambda m: stamp_of(m) == stamp, timeout, f"a message with stamp {stamp}")


def stamp_of(msg: Any) -> tuple[int, int]:
    return int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)


class Peer:
    """An rclpy node inside the test process, spinning in its own thread."""

    def __init__(self, name: str = "fcclip_test_peer") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        self._stamp = 1000

    def next_stamp(self) -> tuple[int, int]:
        """Unique, increasing stamps that are easy to tell apart from real clock stamps."""
        self._stamp += 1
        return self._stamp, 1000 * self._stamp

    def collect(self, msg_type: Any, topic: str, qos: QoSProfile = RELIABLE) -> Collector:
        return Collector(self.node, msg_type, topic, qos)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 60.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            future = client.call_async(request)
            wait_until(future.done, timeout, f"the reply of {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(5)


def image_message(rgb: np.ndarray, stamp: tuple[int, int], frame_id: str, encoding: str = "rgb8") -> Image:
    from fcclip_ros.conversions import byte_field

    pixels = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rgb.shape[1] * 3)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.data = byte_field(pixels)
    return msg


def wait_ready(node: NodeProcess, publisher: Any, timeout: float = 120.0) -> None:
    """Wait until the node subscribes to ``publisher``'s topic (it does so once the model is loaded)."""
    def ready() -> bool:
        if not node.alive():
            raise AssertionError(f"node exited with {node.process.returncode}:\n{node.output[-4000:]}")
        return publisher.get_subscription_count() > 0

    wait_until(ready, timeout, f"{node.fqn} to subscribe")


def lifecycle_state(peer: "Peer", node: NodeProcess, timeout: float = 30.0) -> str:
    """The node's lifecycle state label, from its ``get_state`` service."""
    from lifecycle_msgs.srv import GetState

    return peer.call(GetState, f"{node.fqn}/get_state", GetState.Request(), timeout).current_state.label


def change_state(peer: "Peer", node: NodeProcess, transition: str, timeout: float = 120.0) -> bool:
    """Trigger a lifecycle transition by label (configure, activate, ...), as `ros2 lifecycle set` does."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(label=transition))
    return peer.call(ChangeState, f"{node.fqn}/change_state", request, timeout).success


def diagnostics_values(status: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def node_status(array: Any, node: NodeProcess) -> Any | None:
    """The node's DiagnosticStatus in a DiagnosticArray, if it is there."""
    return next((s for s in array.status if s.name == f"{node.fqn}: segmentation"), None)
