"""The long-job half of ``fcclip-segment``: recordings, ranges, sampling, resuming and ``--ray``.

``fcclip_core.tools.segment`` parses the model and vocabulary options and hands a PredictorSpec
here; this module plans the job (bad recordings are reported before any model is loaded), runs
it in this process or on Ray, merges recordings and prints the summary.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Callable

from fcclip_core.jobs.api import NothingToDo, segment_files
from fcclip_core.jobs.plan import JobOptions
from fcclip_core.jobs.predictor_spec import PredictorSpec
from fcclip_core.jobs.ray_runner import RayOptions
from fcclip_core.jobs.report import format_summary
from fcclip_core.jobs.units import BagOutputOptions

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
    group.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run on Ray: alone, start a local cluster; with an address (auto, ray://host:10001, "
                            "host:6379), join that cluster (pip install 'fcclip_ros[ray]')")
    group.add_argument("--ray-workers", type=int, default=None, help="Ray actors (default: by cluster resources)")
    group.add_argument("--ray-cpus-per-worker", type=float, default=1.0, help="CPUs each Ray actor reserves")
    group.add_argument("--ray-gpus-per-worker", type=float, default=0.0, help="GPUs each Ray actor reserves")
    group.add_argument("--retries", type=int, default=3, help="attempts after a Ray task or actor fails")


def job_options(args: argparse.Namespace, model_key: str) -> JobOptions:
    every = args.every if args.every is not None else args.video_stride
    if every < 1:
        raise SystemExit("fcclip-segment: --every must be >= 1")
    if args.start is not None and args.end is not None and args.end < args.start:
        raise SystemExit("fcclip-segment: --end is before --start")
    if args.chunk_seconds <= 0:
        raise SystemExit("fcclip-segment: --chunk-seconds must be > 0")
    try:
        bag = BagOutputOptions(namespace=args.namespace, outputs=tuple(args.outputs), labels_source=args.labels_source,
                               copy_inputs=not args.no_input_copy, track=not getattr(args, "no_track", False))
    except ValueError as exc:
        raise SystemExit(f"fcclip-segment: {exc}") from None
    return JobOptions(output_dir=args.output, every=every, max_frames=args.max_frames,
                      track=not getattr(args, "no_track", False), topics=tuple(args.topics),
                      start_s=args.start, end_s=args.end, chunk_s=args.chunk_seconds, bag=bag, model_key=model_key)


def run_job(args: argparse.Namespace, spec: PredictorSpec, build_predictor: Callable[[PredictorSpec], Any]) -> int:
    """Plan, run and summarise; exit status 0 when every input was segmented, 1 otherwise."""
    model_key = repr((spec.model_config, str(spec.weights), spec.untrained, spec.input_short_side,
                      spec.max_long_side, spec.vocabulary))
    options = job_options(args, model_key)
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
