"""--ray: a local Ray cluster with 2 workers gives the single-process outputs, and survives a killed worker.

The test starts the cluster in this process (2 CPUs, no dashboard) and runs the real
``fcclip-segment --ray ADDRESS`` against it, as a user would against an existing cluster.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from .recordings import compressed_image, demo_rgb, raw_image, write_recording

ray = pytest.importorskip("ray")

CLASSES = ["cat, kitty", "person", "carpet, rug", "wall"]
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU Ray cluster owned by this test process; shut down (its processes with it) at the end."""
    os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "fcclip-segment"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=600)


def model_args(reference_root: Path) -> list[str]:
    return ["--model-config", "fixture_tiny", "--weights", str(reference_root / "tiny" / "weights.pth"),
            "--short-side", "96", "--threads", "1", "--vocabulary", *CLASSES, "--stuff", "carpet", "wall"]


def inputs_folder(folder: Path, frames: int) -> Path:
    folder.mkdir()
    pictures = [demo_rgb(n, 128) for n in ("chelsea.jpg", "astronaut.jpg", "coffee.jpg")]
    cv2.imwrite(str(folder / "rocket.png"), demo_rgb("rocket.jpg", 128)[:, :, ::-1])
    video = cv2.VideoWriter(str(folder / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (128, 96))
    for k in range(4):
        video.write(cv2.resize(pictures[k % 3], (128, 96))[:, :, ::-1].copy())
    video.release()
    entries = []
    for k in range(frames):
        rgb = pictures[k % 3]
        entries += [("/front/image_raw", T0 + k * 100 * MS, raw_image(rgb, T0 + (frames - k) * MS)),
                    ("/rear/image/compressed", T0 + k * 100 * MS + 1, compressed_image(rgb, T0 + k * MS))]
    write_recording(folder / "drive.mcap", entries)
    return folder


def outputs(folder: Path) -> dict[str, object]:
    """Every output file: JSON without timings, images as pixels, recordings as deserialised messages."""
    from rclpy.serialization import deserialize_message
    from mcap.reader import make_reader
    import importlib

    found: dict[str, object] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json":
            doc = json.loads(path.read_text())
            doc.pop("timings_s")
            found[path.name] = doc
        elif path.suffix == ".png":
            found[path.name] = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).tolist()
        elif path.suffix == ".mcap":
            with path.open("rb") as stream:
                found[path.name] = [
                    (c.topic, m.log_time, deserialize_message(
                        m.data, getattr(importlib.import_module(s.name.split("/")[0] + ".msg"), s.name.split("/")[2])))
                    for s, c, m in make_reader(stream).iter_messages()]
        else:
            found[path.name] = "unexpected file"
    return found


def test_ray_outputs_equal_the_single_process_outputs(reference_root, tmp_path, cluster) -> None:
    folder = inputs_folder(tmp_path / "in", frames=6)
    single = run_cli(str(folder), "-o", str(tmp_path / "single"), *model_args(reference_root), "--chunk-seconds", "0.2")
    assert single.returncode == 0, single.stderr
    spread = run_cli(str(folder), "-o", str(tmp_path / "ray"), *model_args(reference_root), "--chunk-seconds", "0.2",
                     "--ray", cluster, "--ray-workers", "2")
    assert spread.returncode == 0, spread.stderr
    assert "segmented 17 frame(s)" in spread.stdout  # 1 image + 4 video frames + 2 x 6 recording frames
    expected = outputs(tmp_path / "single")
    assert "drive.mcap" in expected and "walk_f000003_segments.json" in expected and "rocket_overlay.png" in expected
    assert outputs(tmp_path / "ray") == expected


def _segment_workers() -> dict[int, str]:
    """pid -> process title of the Ray actor processes of this test's cluster (descendants of this process)."""
    children: dict[int, list[int]] = {}
    titles: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            titles[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    mine, stack = {}, [os.getpid()]
    while stack:
        for child in children.get(stack.pop(), []):
            stack.append(child)
            if titles.get(child, "").startswith("ray::SegmentWorker"):
                mine[child] = titles[child]
    return mine


def test_a_worker_killed_mid_job_is_replaced_and_its_work_retried(reference_root, tmp_path, cluster) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = demo_rgb("chelsea.jpg", 320)
    write_recording(folder / "long.mcap", [("/cam/image_raw", T0 + k * 100 * MS, raw_image(rgb, T0 + k * 100 * MS))
                                           for k in range(40)])
    args = [str(folder / "long.mcap"), *model_args(reference_root), "--chunk-seconds", "0.2", "--short-side", "160"]
    reference = run_cli(*args, "-o", str(tmp_path / "single"))
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "ray"
    script = Path(sys.executable).parent / "fcclip-segment"
    job = subprocess.Popen([str(script), *args, "-o", str(out), "--ray", cluster, "--ray-workers", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    killed = None
    deadline = time.monotonic() + 300
    while job.poll() is None and time.monotonic() < deadline:
        workers = _segment_workers()
        seen |= set(workers)
        busy = [pid for pid, title in workers.items() if title.startswith("ray::SegmentWorker.run")]
        if killed is None and busy and list((out / ".long.parts").glob("part-*.mcap")):
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    stdout, stderr = job.communicate(timeout=300)
    assert killed is not None, "the job ended before a busy worker could be killed"
    assert job.returncode == 0, stderr
    assert "segmented 40 frame(s)" in stdout
    assert outputs(out) == outputs(tmp_path / "single")
    assert len(seen) >= 3, "Ray started a replacement for the killed worker"
