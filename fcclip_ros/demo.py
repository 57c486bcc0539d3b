"""End-to-end demo: the segmentation node on the bundled image stream, outputs written to a folder.

    fcclip-demo [--output demo_output] [--weights CHECKPOINT] [--device auto]

Starts two processes, the node (``fcclip-segment-node``) and the image player
(``fcclip-image-player``, looping over the bundled photos), records the node's overlay, label
image and segments for every photo, writes them to the output folder and prints where. Uses the
released weights when they are found (``--weights``, ``$FCCLIP_WEIGHTS``, the weights cache); otherwise a tiny
UNTRAINED model runs, and the output says so plainly: its masks are not segmentation results.
DDS traffic stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless set).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from fcclip_ros.image_player import list_images
from fcclip_ros.model_setup import StartupError, demo_model
from fcclip_ros.msg import SegmentArray
from fcclip_ros.resources import default_params_file, demo_images_dir

NAMESPACE = "/fcclip_demo"
UNTRAINED_BANNER = (
    "=" * 78 + "\n"
    "  NO RELEASED WEIGHTS FOUND: this demo runs a tiny UNTRAINED model with random weights.\n"
    "  Its masks and labels are NOT segmentation results; they only show that the pipeline runs.\n"
    "  For real results: fcclip-weights (fills the weights cache), or --weights /path/to/fcclip_cocopan.pth.\n"
    + "=" * 78)


def _executable(console_script: str, module: str) -> list[str]:
    """The installed console script of this environment, else the module from the checkout."""
    script = Path(sys.executable).parent / console_script
    return [str(script)] if script.is_file() else [sys.executable, "-m", module]


def _stamp_key(header: Any) -> tuple[int, int]:
    return int(header.stamp.sec), int(header.stamp.nanosec)


@dataclass
class _Frame:
    overlay: Image | None = None
    labels: Image | None = None
    segments: SegmentArray | None = None

    @property
    def complete(self) -> bool:
        return self.overlay is not None and self.labels is not None and self.segments is not None


@dataclass
class Recorder:
    """Collects the node's outputs per stamp and writes one set of files per demo photo."""

    output: Path
    watermark: str = ""  # stamped onto every overlay (untrained model), so no picture passes for a result
    names_by_stamp: dict[tuple[int, int], str] = field(default_factory=dict)
    pending: dict[tuple[int, int], _Frame] = field(default_factory=dict)
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, msg: Any) -> None:
        with self.lock:
            frame = self.pending.setdefault(_stamp_key(msg.header), _Frame())
            setattr(frame, kind, msg)
            self._flush()

    def note_published(self, name: str, stamp: tuple[int, int]) -> None:
        with self.lock:
            self.names_by_stamp[stamp] = name
            self._flush()

    def _flush(self) -> None:
        for stamp, frame in list(self.pending.items()):
            name = self.names_by_stamp.get(stamp)
            if not frame.complete or name is None:
                continue
            del self.pending[stamp]
            if name not in self.written:
                self.written[name] = self._write(len(self.written), name, frame)

    def _write(self, index: int, name: str, frame: _Frame) -> dict[str, Any]:
        stem = f"{index:02d}_{Path(name).stem}"
        overlay = np.frombuffer(frame.overlay.data, np.uint8).reshape(frame.overlay.height, frame.overlay.width, 3)
        picture = np.ascontiguousarray(overlay[:, :, ::-1])
        if self.watermark:
            stamp_watermark(picture, self.watermark)
        cv2.imwrite(str(self.output / f"{stem}_overlay.png"), picture)
        labels = np.frombuffer(frame.labels.data, np.uint16).reshape(frame.labels.height, frame.labels.width)
        cv2.imwrite(str(self.output / f"{stem}_labels.png"), labels)  # 16-bit PNG, 65535 = unlabelled
        segments = frame.segments
        record = {
            "image": name, "stamp": list(_stamp_key(segments.header)), "frame_id": segments.header.frame_id,
            "vocabulary_version": segments.vocabulary_version, "height": segments.height, "width": segments.width,
            "segments": [
                {"id": s.id, "class_id": s.class_id, "label": s.label, "score": round(float(s.score), 4),
                 "is_thing": s.is_thing, "area": s.area,
                 "bbox": [s.bbox.x_offset, s.bbox.y_offset, s.bbox.width, s.bbox.height],
                 "centroid": [round(float(s.centroid_x), 2), round(float(s.centroid_y), 2)]}
                for s in segments.segments],
        }
        (self.output / f"{stem}_segments.json").write_text(json.dumps(record, indent=1) + "\n")
        return {"stem": stem, "segments": len(segments.segments),
                "labels": sorted({s.label for s in segments.segments})}


def stamp_watermark(bgr: np.ndarray, text: str) -> None:
    """Write ``text`` in white on a red band across the top of the picture (in place)."""
    height, width = bgr.shape[:2]
    scale = max(0.35, width / 1100)
    thickness = max(1, round(scale * 2))
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    band = min(height, text_h + baseline + 8)
    bgr[:band] = (0, 0, 200)
    cv2.putText(bgr, text, (max(2, (width - text_w) // 2), band - baseline - 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thickness, cv2.LINE_AA)


def _read_player(stdout: Any, recorder: Recorder) -> None:
    for line in stdout:
        try:
            event = json.loads(line)
            recorder.note_published(event["image"], (int(event["stamp"][0]), int(event["stamp"][1])))
        except (ValueError, KeyError, TypeError, IndexError):
            continue


def _stop(process: subprocess.Popen, timeout: float = 10.0) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fcclip-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("demo_output"), help="folder for the results")
    parser.add_argument("--weights", default="", help="released checkpoint (default: $FCCLIP_WEIGHTS)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--images", type=Path, default=None, help="folder of images (default: the bundled photos)")
    parser.add_argument("--rate", type=float, default=0.0, help="player frame rate (default: 2 Hz tiny, 0.5 Hz released)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    try:
        model = demo_model(args.weights)
    except StartupError as error:
        print(f"fcclip-demo: {error}", file=sys.stderr)
        return 1
    images = args.images or demo_images_dir()
    names = [p.name for p in list_images(images)]
    output = args.output.expanduser().resolve()
    output.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if model.untrained:
        print(UNTRAINED_BANNER, flush=True)
    else:
        print(f"fcclip-demo: {model.describe()}", flush=True)
    rate = args.rate or (2.0 if model.untrained else 0.5)

    node_cmd = _executable("fcclip-segment-node", "fcclip_ros.segment_node") + [
        "--ros-args", "-r", f"__ns:={NAMESPACE}", "--params-file", str(default_params_file()),
        "-p", f"model_config:={model.model_config}", "-p", f"weights:='{model.weights or ''}'",
        "-p", f"allow_untrained:={'true' if model.untrained else 'false'}", "-p", f"device:={args.device}",
        # The player publishes reliably; a reliable subscription keeps full-size photos from being
        # lost in transit (best-effort DDS drops samples above ~0.5 MB between processes).
        "-p", "image_qos.reliability:=reliable"]
    player_cmd = _executable("fcclip-image-player", "fcclip_ros.image_player") + [
        "--ros-args", "-r", f"__ns:={NAMESPACE}", "-p", f"directory:={images}", "-p", f"rate:={rate}",
        "-p", "wait_for_subscribers:=true", "-p", "print_frames:=true"]

    recorder = Recorder(output, watermark="UNTRAINED MODEL: random masks, not a result" if model.untrained else "")
    rclpy.init(args=[])
    node = Node("fcclip_demo_recorder", namespace=NAMESPACE)
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
    for topic, kind, msg_type in (("segment_node/overlay", "overlay", Image),
                                  ("segment_node/labels", "labels", Image),
                                  ("segment_node/segments", "segments", SegmentArray)):
        node.create_subscription(msg_type, topic, lambda m, k=kind: recorder.add(k, m), qos)

    print(f"fcclip-demo: starting the node ({model.model_config}) and the player ({len(names)} photos from "
          f"{images} at {rate:g} Hz) ...", flush=True)
    node_proc = subprocess.Popen(node_cmd, stdin=subprocess.DEVNULL)
    player_proc = subprocess.Popen(player_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    threading.Thread(target=_read_player, args=(player_proc.stdout, recorder), daemon=True).start()
    deadline = time.monotonic() + args.timeout
    status = 0
    try:
        while len(recorder.written) < len(names):
            rclpy.spin_once(node, timeout_sec=0.2)
            if node_proc.poll() is not None:
                print(f"fcclip-demo: the node exited with status {node_proc.returncode}", file=sys.stderr)
                status = 1
                break
            if time.monotonic() > deadline:
                print(f"fcclip-demo: timed out after {args.timeout:g} s", file=sys.stderr)
                status = 1
                break
    except KeyboardInterrupt:
        status = 130
    finally:
        _stop(player_proc)
        _stop(node_proc)
        node.destroy_node()
        rclpy.try_shutdown()

    print(f"\nfcclip-demo: wrote {len(recorder.written)} of {len(names)} frames to {output}")
    for name, info in recorder.written.items():
        shown = ", ".join(info["labels"][:6]) + (" ..." if len(info["labels"]) > 6 else "")
        print(f"  {name}: {info['stem']}_overlay.png, {info['stem']}_labels.png (16-bit, 65535 = unlabelled), "
              f"{info['stem']}_segments.json ({info['segments']} segment{'' if info['segments'] == 1 else 's'}"
              f"{': ' + shown if shown else ''})")
    if model.untrained:
        print("\n" + UNTRAINED_BANNER)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
