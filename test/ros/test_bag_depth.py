"""fcclip-segment with --depth-topic/--camera-info-topic: recorded depth becomes the node's 3D outputs.

The recording is written with real CDR: a colour camera, its camera_info and a 16UC1 depth at half
resolution whose constant plane distance encodes the frame it belongs to, so every 3D output shows
which depth was paired. Header stamps run backwards, depth is logged before or after its frame,
and one frame has no depth within the tolerance.
"""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from fcclip_ros.msg import SegmentArray

from ..core.jobs.recordings import FRAME_ID, FX, camera_info, demo_rgb, depth_image, raw_image, stamp, write_recording
from .test_bag_segmenter import MS, T0, messages, model_args, predictor, run_cli  # noqa: F401 (fixture)

pytestmark = pytest.mark.ros
vision_msgs = pytest.importorskip("vision_msgs.msg",
                                  reason="the real vision_msgs comes from ../shared/ros-tools (not installed)")

COLOUR, DEPTH, INFO = "/camera/color/image_raw", "/camera/depth/image_rect_raw", "/camera/color/camera_info"
NO_DEPTH = 2  # this frame's only depth is 60 ms off: beyond the 20 ms tolerance


def plane_metres(k: int) -> float:
    return 1.0 + 0.2 * k


def depth_recording(path, frames: int = 4):
    """(recording, {log time: (rgb, colour header stamp ns, plane metres or None)})."""
    pictures = [demo_rgb(name, 96) for name in ("chelsea.jpg", "astronaut.jpg", "coffee.jpg")]
    entries, frames_at = [], {}
    for k in range(frames):
        rgb = pictures[k % len(pictures)]
        height, width = rgb.shape[:2]
        log_ns = T0 + k * 100 * MS
        header_ns = T0 + (frames - k) * 100 * MS  # stamps run backwards while log times run forwards
        colour = raw_image(rgb, header_ns, FRAME_ID)
        info = camera_info(width, height)
        info.header = colour.header
        off = 60 * MS if k == NO_DEPTH else 3 * MS
        depth = depth_image(width, height, header_ns + off, plane_metres(k))
        depth_log = log_ns - 10 * MS if k % 2 == 0 else log_ns + 10 * MS  # before or after its frame
        entries += [(INFO, log_ns - 1, info), (COLOUR, log_ns, colour), (DEPTH, depth_log, depth)]
        frames_at[log_ns] = (rgb, header_ns, None if k == NO_DEPTH else plane_metres(k))
    entries.sort(key=lambda entry: entry[1])
    return write_recording(path, entries), frames_at


def test_recorded_depth_gives_the_3d_outputs(reference_root, tmp_path, predictor) -> None:
    source, frames_at = depth_recording(tmp_path / "rgbd.mcap")
    out = tmp_path / "out"
    done = run_cli(str(source), "-o", str(out), *model_args(reference_root), "--depth-topic", DEPTH,
                   "--camera-info-topic", INFO, "--publish-cloud", "--cloud-decimation", "2",
                   "--min-points", "5", "--chunk-seconds", "0.25")
    assert done.returncode == 0, done.stderr
    assert "segmented 4 frame(s)" in done.stdout, done.stdout
    assert "3D: 3 frame(s) with depth, 1 in 2D only" in done.stdout, done.stdout
    assert "2D only, 1 frame(s): no depth within 0.02 s of the frame" in done.stdout, done.stdout

    written = messages(out / "rgbd.mcap")
    assert [m for m in written if m[0] in (COLOUR, DEPTH, INFO)] == messages(source), "inputs are copied"
    by_key = {(topic, log_time): data for topic, log_time, data in written}
    assert not any(t.startswith(f"/fcclip{DEPTH}") for t, _, _ in written), "depth is not segmented"
    checked = 0
    for log_ns, (rgb, header_ns, metres) in frames_at.items():
        segments = deserialize_message(by_key[(f"/fcclip{COLOUR}/segments", log_ns)], SegmentArray)
        assert segments.header.stamp == stamp(header_ns) and segments.header.frame_id == FRAME_ID
        if metres is None:
            assert not any(s.has_3d for s in segments.segments), "the frame without depth is 2D only"
            for name in ("detections_3d", "markers", "cloud"):
                assert (f"/fcclip{COLOUR}/{name}", log_ns) not in by_key
            continue
        expected = predictor.predict(np.ascontiguousarray(rgb)).panoptic
        height, width = rgb.shape[:2]
        rows, cols = np.indices((height, width))
        with_3d = {s.id: s for s in segments.segments if s.has_3d}
        assert with_3d, "segments of a frame with depth get 3D"
        for s in expected.segments:
            mask = expected.segment_ids == s.id
            if mask.sum() < 5:
                continue
            got = with_3d[s.id]
            x = ((cols[mask] - (width - 1) / 2) * metres / FX).mean()
            y = ((rows[mask] - (height - 1) / 2) * metres / FX).mean()
            centroid = got.centroid_3d
            assert abs(centroid.z - metres) < 0.01 and abs(got.median_depth - metres) < 0.01, (s.id, centroid)
            assert abs(centroid.x - x) < 0.01 and abs(centroid.y - y) < 0.01, (s.id, centroid, x, y)
            assert got.num_points == mask.sum()
            checked += 1
        detections = deserialize_message(by_key[(f"/fcclip{COLOUR}/detections_3d", log_ns)],
                                         vision_msgs.Detection3DArray)
        assert detections.header == segments.header
        things = [s for s in segments.segments if s.has_3d and s.is_thing]
        assert len(detections.detections) == len(things)
        for detection, s in zip(detections.detections, things):
            assert detection.results[0].hypothesis.class_id == s.label
            assert detection.results[0].pose.pose.position == s.centroid_3d
        markers = deserialize_message(by_key[(f"/fcclip{COLOUR}/markers", log_ns)], MarkerArray)
        assert markers.markers[0].action == Marker.DELETEALL
        assert len(markers.markers) == 1 + 2 * len(with_3d)
        cloud = deserialize_message(by_key[(f"/fcclip{COLOUR}/cloud", log_ns)], PointCloud2)
        z = np.frombuffer(bytes(cloud.data), np.uint8).reshape(cloud.width, cloud.point_step)
        z = z[:, 8:12].copy().view(np.float32).ravel()
        assert cloud.width > 0 and np.allclose(z, metres, atol=0.001)
    assert checked >= 3


def test_depth_options_are_checked_before_any_model_loads(reference_root, tmp_path) -> None:
    source, _ = depth_recording(tmp_path / "rgbd.mcap", frames=2)
    out = tmp_path / "out"

    def refused(*extra: str) -> str:
        done = run_cli(str(source), "-o", str(out), *model_args(reference_root), *extra, timeout=120)
        assert done.returncode != 0 and not out.joinpath("rgbd.mcap").exists()
        return done.stderr + done.stdout

    assert "--depth-topic and --camera-info-topic go together" in refused("--depth-topic", DEPTH)
    assert "--max-depth, --publish-cloud need --depth-topic" in refused("--max-depth", "3", "--publish-cloud")
    assert "min_points" in refused("--depth-topic", DEPTH, "--camera-info-topic", INFO, "--min-points", "0")
    wrong = refused("--depth-topic", INFO, "--camera-info-topic", DEPTH)
    assert f"{INFO} is sensor_msgs/msg/CameraInfo, expected sensor_msgs/msg/Image" in wrong
    missing = refused("--depth-topic", "/nowhere", "--camera-info-topic", INFO)
    assert "no topic /nowhere in this recording" in missing


def test_depth_needs_one_image_topic(reference_root, tmp_path) -> None:
    rgb = demo_rgb("chelsea.jpg", 96)
    h, w = rgb.shape[:2]
    entries = [(INFO, T0, camera_info(w, h)), (COLOUR, T0 + 1, raw_image(rgb, T0)),
               ("/camera/ir/image_raw", T0 + 2, raw_image(rgb, T0)),
               (DEPTH, T0 + 3, depth_image(w, h, T0, 1.0))]
    source = write_recording(tmp_path / "two.mcap", entries)
    out = tmp_path / "out"
    args = [str(source), "-o", str(out), *model_args(reference_root), "--depth-topic", DEPTH,
            "--camera-info-topic", INFO]
    done = run_cli(*args, timeout=300)
    assert done.returncode != 0
    assert "depth and camera_info belong to one image topic, but 2 are chosen" in done.stdout + done.stderr
    done = run_cli(*args, "--topics", COLOUR, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "3D: 1 frame(s) with depth, 0 in 2D only" in done.stdout
