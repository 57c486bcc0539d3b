"""The long-job half of ``fcclip-segment``: recordings, ranges, sampling, resuming and ``--ray``.

``fcclip_core.tools.segment`` parses the model and vocabulary options and hands a PredictorSpec
here; this module plans the job (bad recordings are reported before any model is loaded), runs
it in this process or on Ray, merges recordings and prints the summary.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Callable, Optional

from fcclip_core.jobs.api import NothingToDo, segment_files
from fcclip_core.jobs.plan import JobOptions
from fcclip_core.jobs.predictor_spec import PredictorSpec
from fcclip_core.jobs.ray_runner import RayOptions
from fcclip_core.jobs.report import format_summary
from fcclip_core.jobs.units import BAG_DEPTH_CHECK, BagDepthOptions, BagOutputOptions, load_hook

log = logging.getLogger("fcclip-segment")
BAG_OUTPUTS = BagOutputOptions().outputs


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of recordings (MCAP) and long jobs."""
    group = parser.add_argument_group("ROS 2 recordings (.mcap) and long jobs")
    group.add_argument("--topics", nargs="+", default=[], metavar="TOPIC",
                       help="image topics to segment (sensor_msgs/Image or CompressedImage; default: all)")
    group.add_argument("--namespace", default="/fcclip",
                       help="outputs of input topic T go to <namespace>T/labels etc. (default /fcclip)")
    group.add_argument("--outputs", nargs="+", default=list(BAG_OUTPUTS), choices=BAG_OUTPUTS,
                       help="per-frame outputs written into recordings (default: all)")
    group.add_argument("--labels-source", choices=("panoptic", "semantic"), default="panoptic",
                       help="class of each pixel's panoptic segment, or the dense semantic argmax")
    group.add_argument("--no-input-copy", action="store_true",
                       help="write only our outputs, not the input image topics, into the output recording")
    group.add_argument("--start", type=float, default=None, metavar="SECONDS",
                       help="segment from this many seconds after the recording's first message")
    group.add_argument("--end", type=float, default=None, metavar="SECONDS",
                       help="segment up to this many seconds after the recording's first message")
    group.add_argument("--every", type=int, default=None, metavar="N",
                       help="segment every N-th frame of each topic or video (videos: same as --video-stride)")
    group.add_argument("--chunk-seconds", type=float, default=30.0,
                       help="recordings are processed (and resumed, and spread over Ray) in chunks this long")
    depth = parser.add_argument_group(
        "3D outputs from depth in recordings (as the node's use_depth; defaults: the node's parameters)")
    depth.add_argument("--depth-topic", default=None, metavar="TOPIC",
                       help="depth registered to the colour image (sensor_msgs/Image, 16UC1 mm or 32FC1 m) of "
                            "the one segmented image topic; writes detections_3d, markers and 3D segment fields")
    depth.add_argument("--camera-info-topic", default=None, metavar="TOPIC",
                       help="the colour camera's sensor_msgs/CameraInfo (required with --depth-topic)")
    depth.add_argument("--depth-scale", type=float, default=None,
                       help="metres per depth unit; 0: from the encoding (node default 0)")
    depth.add_argument("--depth-tolerance", type=float, default=None, metavar="SECONDS",
                       help="largest colour-depth stamp difference that still pairs (node default 0.02)")
    depth.add_argument("--max-depth", type=float, default=None, help="metres; farther depth is invalid (node default 10)")
    depth.add_argument("--min-points", type=int, default=None,
                       help="valid depth pixels a segment needs to get 3D (node default 20)")
    depth.add_argument("--publish-cloud", action="store_true",
                       help="also write <namespace>T/cloud (sensor_msgs/PointCloud2 of the labelled points)")
    depth.add_argument("--cloud-decimation", "--cloud-every", dest="cloud_decimation", type=int, default=None,
                       metavar="N", help="the cloud keeps every N-th row and column (node default 4)")
    group.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run on Ray: alone, start a local cluster; with an address (auto, ray://host:10001, "
                            "host:6379), join that cluster (pip install 'fcclip_ros[ray]')")
    group.add_argument("--ray-workers", type=int, default=None, help="Ray actors (default: by cluster resources)")
    group.add_argument("--ray-cpus-per-worker", type=float, default=1.0, help="CPUs each Ray actor reserves")
    group.add_argument("--ray-gpus-per-worker", type=float, default=0.0, help="GPUs each Ray actor reserves")
    group.add_argument("--retries", type=int, default=3, help="attempts after a Ray task or actor fails")


def job_options(args: argparse.Namespace) -> JobOptions:
    every = args.every if args.every is not None else args.video_stride
    if every < 1:
        raise SystemExit("fcclip-segment: --every must be >= 1")
    if args.start is not None and args.end is not None and args.end < args.start:
        raise SystemExit("fcclip-segment: --end is before --start")
    if args.chunk_seconds <= 0:
        raise SystemExit("fcclip-segment: --chunk-seconds must be > 0")
    try:
        bag = BagOutputOptions(namespace=args.namespace, outputs=tuple(args.outputs), labels_source=args.labels_source,
                               copy_inputs=not args.no_input_copy, track=not getattr(args, "no_track", False),
                               depth=depth_options(args))
        if bag.depth is not None:
            load_hook(BAG_DEPTH_CHECK)(bag.depth)
    except ValueError as exc:
        raise SystemExit(f"fcclip-segment: {exc}") from None
    return JobOptions(output_dir=args.output, every=every, max_frames=args.max_frames,
                      track=not getattr(args, "no_track", False), topics=tuple(args.topics),
                      start_s=args.start, end_s=args.end, chunk_s=args.chunk_seconds, bag=bag)


DEPTH_SETTINGS = ("depth_scale", "depth_tolerance", "max_depth", "min_points", "cloud_decimation")


def depth_options(args: argparse.Namespace) -> Optional[BagDepthOptions]:
    """The depth settings of the command line, or None without --depth-topic/--camera-info-topic."""
    depth_topic, info_topic = getattr(args, "depth_topic", None), getattr(args, "camera_info_topic", None)
    if depth_topic is None and info_topic is None:
        given = [f"--{n.replace('_', '-')}" for n in DEPTH_SETTINGS if getattr(args, n, None) is not None]
        if getattr(args, "publish_cloud", False):
            given.append("--publish-cloud")
        if given:
            raise ValueError(f"{', '.join(given)} need --depth-topic and --camera-info-topic")
        return None
    if depth_topic is None or info_topic is None:
        raise ValueError("--depth-topic and --camera-info-topic go together (3D needs both)")
    return BagDepthOptions(depth_topic, info_topic, publish_cloud=args.publish_cloud,
                           **{n: getattr(args, n) for n in DEPTH_SETTINGS})


def run_job(args: argparse.Namespace, spec: PredictorSpec, build_predictor: Callable[[PredictorSpec], Any]) -> int:
    """Plan, run and summarise; exit status 0 when every input was segmented, 1 otherwise."""
    options = job_options(args)
    ray = None
    if args.ray:
        ray = RayOptions(address=None if args.ray == "local" else args.ray, workers=args.ray_workers,
                         cpus_per_worker=args.ray_cpus_per_worker, gpus_per_worker=args.ray_gpus_per_worker,
                         retries=args.retries)
    try:
        outcome = segment_files(args.inputs, spec, options, ray, build_predictor)
    except NothingToDo as exc:
        raise SystemExit(f"fcclip-segment: {exc}") from None
    for output in outcome.already_done:
        log.info("%s exists: already done (delete it to segment again)", output)
    for output, messages in outcome.recordings.items():
        print(f"wrote {output} ({messages} messages)")
    if outcome.report.image_outputs:
        print(f"wrote results of {outcome.report.image_outputs} image(s) to {options.output_dir.resolve()}")
    print(format_summary(outcome.report, outcome.wall_s, outcome.failures))
    return 1 if outcome.failures else 0
