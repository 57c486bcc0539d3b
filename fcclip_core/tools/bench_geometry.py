"""Time of the 3D segment geometry, the labelled cloud and the tracker for one frame.

    python -m fcclip_core.tools.bench_geometry [--size 640x480] [--segments 30] [--repeats 50]
        [--cloud-decimation 4] [--depth-dtype uint16|float32]

The frame is a synthetic scene (a floor, a wall and a grid of plates, so ``--segments`` counts
all of them) rendered with a pinhole camera; a tenth of the depth pixels are set invalid.
Prints the median and the 10th/90th percentile of the wall-clock time over the repeats, and the
median CPU time of the process (numpy runs this single-threaded), in milliseconds, of:
``geometry`` (depth to metres on the label grid + every segment's 3D), ``cloud`` (the
decimated labelled cloud) and ``tracker`` (one ``SegmentTracker.update`` of the frame's
segments against the tracks of the previous frame, with 3D centroids; all segments but the
floor and the wall are things). The issue's target is under 5 ms for geometry at 640x480, 30
segments.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from typing import Callable, Sequence

import numpy as np

from fcclip_core.spatial.intrinsics import PinholeIntrinsics
from fcclip_core.spatial.segments_3d import (GeometryConfig, depth_on_label_grid, labelled_cloud,
                                             segment_geometry)
from fcclip_core.spatial.synthetic import Scene, grid_of_plates, panoptic_result, render
from fcclip_core.spatial.tracker import SegmentTracker


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def make_frame(width: int, height: int, segments: int, depth_dtype: str,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, PinholeIntrinsics]:
    """(segment ids, raw depth, intrinsics) of a scene with ``segments`` segments."""
    if segments < 3:
        raise ValueError("segments counts the floor and the wall: use at least 3")
    k = PinholeIntrinsics(fx=0.8 * width, fy=0.8 * width, cx=(width - 1) / 2,
                          cy=(height - 1) / 2, width=width, height=height)
    plates = segments - 2
    cols = math.ceil(math.sqrt(plates * 4 / 3))
    rows = math.ceil(plates / cols)
    scene = Scene(wall_z=5.0, floor_y=1.2, plates=grid_of_plates(k, rows, cols)[:plates])
    ids, depth = render(scene, k)
    rng = np.random.default_rng(seed)
    depth[rng.random(depth.shape) < 0.1] = 0.0
    if depth_dtype == "uint16":
        return ids, np.round(depth * 1000).astype(np.uint16), k
    return ids, depth, k


def _time(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    """Wall-clock median and 10th/90th percentiles, and the median CPU time of this process
    (less sensitive than wall time to other processes sharing the cores)."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    p10, p50, p90 = np.percentile(wall, [10, 50, 90])
    return {"median_ms": round(float(p50), 3), "p10_ms": round(float(p10), 3),
            "p90_ms": round(float(p90), 3), "cpu_median_ms": round(float(np.median(cpu)), 3)}


def run(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=_size, default=(640, 480), help="WxH (default 640x480)")
    parser.add_argument("--segments", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--cloud-decimation", type=int, default=4)
    parser.add_argument("--depth-dtype", choices=["uint16", "float32"], default="uint16")
    args = parser.parse_args(argv)
    width, height = args.size
    ids, depth, k = make_frame(width, height, args.segments, args.depth_dtype)
    config = GeometryConfig()
    found = len(np.unique(ids))
    depth_m, grid_k = depth_on_label_grid(depth, k, ids.shape, config.depth_scale)

    def geometry() -> object:
        metres, kk = depth_on_label_grid(depth, k, ids.shape, config.depth_scale)
        return segment_geometry(ids, metres, kk, config)

    classes = np.arange(ids.max() + 1)
    num = int(ids.max())
    panoptic = panoptic_result(ids, [(sid, sid - 1, sid > 2) for sid in range(1, num + 1)],
                               [f"class{c}" for c in range(num)])
    positions = {sid: g.centroid for sid, g in geometry().segments().items()}
    tracker = SegmentTracker()
    stamps = iter(range(10**9))
    tracker.update(panoptic, stamp=float(next(stamps)), positions_3d=positions)
    report = {
        "size": f"{width}x{height}", "segments": found, "depth_dtype": args.depth_dtype,
        "with_3d": len(geometry()), "repeats": args.repeats,
        "geometry": _time(geometry, args.repeats),
        "cloud": _time(lambda: labelled_cloud(ids, depth_m, grid_k, classes,
                                              args.cloud_decimation), args.repeats),
        "cloud_points": len(labelled_cloud(ids, depth_m, grid_k, classes,
                                           args.cloud_decimation).points),
        "tracker": _time(lambda: tracker.update(panoptic, stamp=float(next(stamps)),
                                                positions_3d=positions), args.repeats),
        "live_tracks": tracker.num_tracks,
    }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    print(json.dumps(run(argv), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
