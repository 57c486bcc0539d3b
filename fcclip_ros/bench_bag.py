"""Throughput of fcclip-segment on a ROS 2 recording: one process vs Ray workers, and with depth.

Writes a recording of demo photos (raw rgb8 frames), runs the real ``fcclip-segment`` on it in
each mode with N and 2N frames, and prints the end-to-end time and the steady rate
N / (T(2N) - T(N)), which leaves out the start-up (model build, Ray cluster and actors).
A benchmark, not a test: it prints numbers.

    python -m fcclip_ros.bench_bag --model-config rn50 --untrained --frames 24 --workers 2
    python -m fcclip_ros.bench_bag --model-config rn50 --untrained --frames 24 --workers 0 --depth
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from fcclip_ros.conversions import array_to_image, rgb_to_image



def demo_frames(width: int) -> list[np.ndarray]:
    """The bundled photos (installed beside the package or in the checkout) at ``width`` pixels."""
    from ament_index_python.packages import get_package_share_directory

    folder = Path(get_package_share_directory("fcclip_ros")) / "demo_images"
    frames = []
    for path in sorted(folder.glob("*.jpg")):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        height = round(bgr.shape[0] * width / bgr.shape[1])
        frames.append(np.ascontiguousarray(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)[:, :, ::-1]))
    return frames


def write_benchmark_recording(path: Path, frames: int, width: int) -> Path:
    """Raw rgb8 frames at 10 Hz on /camera/image_raw, each with a camera_info and a 16UC1 depth plane."""
    from mcap.writer import Writer
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CameraInfo

    from fcclip_ros.bag_schemas import OUTPUT_QOS, complete_definition

    pictures = demo_frames(width)
    with path.open("wb") as stream:
        writer = Writer(stream)
        writer.start(profile="ros2", library="fcclip_ros bench")
        channels = {}
        for topic, kind in (("/camera/image_raw", "Image"), ("/camera/depth", "Image"), ("/camera/camera_info", "CameraInfo")):
            schema = writer.register_schema(f"sensor_msgs/msg/{kind}", "ros2msg",
                                            complete_definition(f"sensor_msgs/msg/{kind}").encode())
            channels[topic] = writer.register_channel(topic, "cdr", schema, {"offered_qos_profiles": OUTPUT_QOS})
        for k in range(frames):
            t = 1_700_000_000_000_000_000 + k * 100_000_000
            header = Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="camera")
            rgb = pictures[k % len(pictures)]
            h, w = rgb.shape[:2]
            info = CameraInfo(header=header, width=w, height=h,
                              k=[w * 0.8, 0.0, (w - 1) / 2, 0.0, w * 0.8, (h - 1) / 2, 0.0, 0.0, 1.0])
            depth = array_to_image(np.full((h, w), 1500 + 100 * (k % 5), np.uint16), "16UC1", header)
            for topic, message in (("/camera/camera_info", info), ("/camera/depth", depth),
                                   ("/camera/image_raw", rgb_to_image(rgb, header))):
                writer.add_message(channels[topic], log_time=t, publish_time=t, data=serialize_message(message))
        writer.finish()
    return path


def timed_run(recording: Path, frames: int, output: Path, common: list[str], mode: list[str]) -> float:
    script = Path(sys.executable).parent / "fcclip-segment"
    started = time.perf_counter()
    done = subprocess.run([str(script), str(recording), "-o", str(output), *common, *mode],
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bench_bag: fcclip-segment failed:\n{done.stderr[-3000:]}")
    if f"segmented {frames} frame(s)" not in done.stdout:
        raise SystemExit(f"bench_bag: expected {frames} segmented frames, got:\n{done.stdout}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-config", default="rn50")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--untrained", action="store_true", help="generated weights (cost does not depend on values)")
    parser.add_argument("--short-side", type=int, default=320)
    parser.add_argument("--width", type=int, default=640, help="width of the recorded frames")
    parser.add_argument("--frames", type=int, default=24, help="N (runs use N and 2N frames)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (0: no Ray mode)")
    parser.add_argument("--depth", action="store_true",
                        help="also a single-process run with --depth-topic/--camera-info-topic (3D outputs)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the single process")
    parser.add_argument("--chunk-seconds", type=float, default=0.4, help="the recording is at 10 Hz: 4 frames a chunk")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    common = ["--model-config", args.model_config, "--short-side", str(args.short_side),
              "--vocabulary", "person", "cat", "cup", "rocket", "sky", "floor", "wall", "--stuff", "sky", "floor", "wall",
              "--no-input-copy", "--outputs", "labels", "segment_ids", "segments", "detections",
              "--chunk-seconds", str(args.chunk_seconds)]
    common += ["--weights", args.weights] if args.weights else ["--untrained"] if args.untrained else []
    common += ["--topics", "/camera/image_raw"]
    modes = {"1 process": ["--threads", str(args.threads)]}
    if args.depth:
        modes["1 process, with depth (3D outputs)"] = [
            "--threads", str(args.threads), "--depth-topic", "/camera/depth", "--camera-info-topic", "/camera/camera_info"]
    if args.workers > 0:
        modes[f"Ray, {args.workers} workers"] = ["--ray", "--ray-workers", str(args.workers), "--threads", "1"]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        recordings = {n: write_benchmark_recording(root / f"rec{n}.mcap", n, args.width)
                      for n in (args.frames, 2 * args.frames)}
        print(f"model {args.model_config}, short side {args.short_side}, frames {args.width} px wide, "
              f"N = {args.frames}, repeat {args.repeat}")
        print("| mode | N frames: wall | 2N frames: wall | 2N end to end | steady (N / (T2N - TN)) |")
        print("| --- | --- | --- | --- | --- |")
        times = {label: {n: [] for n in recordings} for label in modes}
        for r in range(args.repeat):  # modes interleaved, so a change of the machine's load hits both
            for n, recording in recordings.items():
                for label, mode in modes.items():
                    times[label][n].append(timed_run(recording, n, root / f"out-{len(label)}-{n}-{r}", common, mode))
        for label in modes:
            t1, t2 = (statistics.median(times[label][n]) for n in recordings)
            print(f"| {label} | {t1:.1f} s | {t2:.1f} s | {2 * args.frames / t2:.2f} frames/s | "
                  f"{args.frames / (t2 - t1):.2f} frames/s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
