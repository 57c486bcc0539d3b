"""fcclip-segment: segment image files, videos, ROS 2 recordings or folders of them with a given vocabulary.

For every image (or sampled video frame) it writes, into the output folder:
  <name>_overlay.png    the image with coloured panoptic segments and their labels
  <name>_segments.json  image size, vocabulary, segments (id, class, label, score, area, bbox,
                        centroid; track_id for video frames), instances (class, score, bbox)
                        and timings
  <name>_panoptic.png   16-bit segment-id image (0 = none), ids as in the JSON
For every ROS 2 recording (.mcap) it writes <name>.mcap: the chosen image topics plus the live
node's outputs (labels, segment ids, segments, detections, overlay, vocabulary) per image topic.

Examples:
  fcclip-segment photo.jpg -o out/ --model-config convnext_large --weights fcclip_cocopan.pth \\
      --clip-weights open_clip_pytorch_model.bin --vocabulary "person, people" "floor" --stuff floor
  fcclip-segment frames/ drive.mp4 -o out/ --model-config fixture_tiny --weights tiny/weights.pth
  fcclip-segment run.mcap -o out/ --model-config rn50 --topics /camera/image_raw --every 5 --ray
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import cv2
import numpy as np

from fcclip_core.jobs.cli import add_job_arguments

if TYPE_CHECKING:
    from fcclip_core.jobs.predictor_spec import PredictorSpec
    from fcclip_core.predictor import Predictor

from fcclip_core.compilation import COMPILE_MODES
from fcclip_core.precision import PRECISIONS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg"}

log = logging.getLogger("fcclip-segment")


def iter_frames(inputs: Sequence[Path], video_stride: int,
                max_frames: Optional[int]) -> Iterator[tuple[str, np.ndarray, Optional[Path]]]:
    """(name, RGB uint8 image, the video it is from or None) for every image file, image inside a
    folder, or sampled video frame."""
    for path in inputs:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            if not files:
                log.warning("%s: no images or videos inside", path)
            yield from iter_frames(files, video_stride, max_frames)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            yield from _video_frames(path, video_stride, max_frames)
        else:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise SystemExit(f"fcclip-segment: cannot read image {path}")
            yield path.stem, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None


def _video_frames(path: Path, stride: int,
                  max_frames: Optional[int]) -> Iterator[tuple[str, np.ndarray, Optional[Path]]]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SystemExit(f"fcclip-segment: cannot open video {path}")
    index = produced = 0
    try:
        while max_frames is None or produced < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            if index % stride == 0:
                produced += 1
                yield f"{path.stem}_f{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), path
            index += 1
    finally:
        capture.release()
    if produced == 0:
        log.warning("%s: no frames decoded", path)


def result_to_json(result, name: str, track_ids: Optional[dict[int, int]] = None) -> dict:
    """The JSON document of one result (everything but the pixel maps); ``track_ids`` (segment
    id -> track id) adds each segment's ``track_id``."""
    vocab = result.vocabulary
    doc: dict = {
        "image": name,
        "height": result.image_hw[0],
        "width": result.image_hw[1],
        "vocabulary_version": result.vocabulary_version,
        "vocabulary": [
            {"class_id": i, "label": e.names[0], "names": list(e.names), "isthing": e.isthing}
            for i, e in enumerate(vocab.entries)
        ],
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
    }
    if result.panoptic is not None:
        doc["segments"] = [asdict(segment) for segment in result.panoptic.segments]
        if track_ids is not None:
            for segment in doc["segments"]:
                segment["track_id"] = track_ids.get(segment["id"], 0)
    if result.instances is not None:
        inst = result.instances
        doc["instances"] = [
            {"class_id": int(c), "label": vocab.labels[int(c)], "score": float(s), "bbox": [int(v) for v in b],
             "area": int(m.sum())}
            for c, s, b, m in zip(inst.classes, inst.scores, inst.boxes, inst.masks)
        ]
    return doc


def write_outputs(result, rgb: np.ndarray, name: str, output_dir: Path,
                  track_ids: Optional[dict[int, int]] = None) -> list[Path]:
    from fcclip_core.visualize import overlay

    written = []
    if result.panoptic is not None:
        picture = overlay(rgb, result.panoptic)
        path = output_dir / f"{name}_overlay.png"
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        written.append(path)
        ids = result.panoptic.segment_ids
        if ids.max(initial=0) > np.iinfo(np.uint16).max:
            raise SystemExit("fcclip-segment: more than 65535 segments cannot be stored in a 16-bit PNG")
        path = output_dir / f"{name}_panoptic.png"
        cv2.imwrite(str(path), ids.astype(np.uint16))
        written.append(path)
    path = output_dir / f"{name}_segments.json"
    path.write_text(json.dumps(result_to_json(result, name, track_ids), indent=1), encoding="utf-8")
    written.append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fcclip-segment", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("inputs", nargs="+", type=Path,
                        help="image files, videos, ROS 2 recordings (.mcap), or folders of them")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the results (created)")
    parser.add_argument("--model-config", default="convnext_large",
                        help="a shipped model config name or a YAML file (default: convnext_large)")
    parser.add_argument("--weights", type=Path,
                        help="FC-CLIP checkpoint (.pth) or exported .safetensors (default: the weights cache, "
                             "see fcclip-weights)")
    parser.add_argument("--clip-weights", type=Path,
                        help="open_clip weights filling the CLIP keys the released checkpoint lacks "
                             "(default: the weights cache)")
    parser.add_argument("--download", action="store_true",
                        help="download the released weights into the cache when they are missing")
    parser.add_argument("--untrained", action="store_true",
                        help="random weights instead of a checkpoint (pipeline checks only: masks mean nothing)")
    vocab = parser.add_mutually_exclusive_group()
    vocab.add_argument("--vocabulary", nargs="+", metavar="CLASS",
                       help='class entries, each "label" or "label, synonym, ..." (default: COCO panoptic)')
    vocab.add_argument("--vocabulary-file", type=Path, help="a vocabulary file (see fcclip_core.vocabulary)")
    parser.add_argument("--stuff", nargs="*", default=[], metavar="LABEL",
                        help="labels of --vocabulary entries that are stuff (the rest are things)")
    parser.add_argument("--short-side", type=int, default=None,
                        help="network input short side (default: the config's, 800; 0 = native size)")
    parser.add_argument("--max-long-side", type=int, default=None, help="cap of the input long side (default 1333)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="network precision: fp32 (default), bf16, fp16, or auto (bf16 where native "
                             "and faster; see README, Precision)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matrix products on a CUDA device")
    parser.add_argument("--compile", default="off", choices=COMPILE_MODES,
                        help="torch.compile the network (off by default: slow start; for a fixed image size)")
    parser.add_argument("--video-stride", type=int, default=1, help="segment every N-th video frame")
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames per video")
    add_job_arguments(parser)
    parser.add_argument("--no-track", action="store_true",
                        help="do not give video frames' segments track ids (default: one tracker per video; "
                             "a new thing's id is 0 until it was seen in 2 frames)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.video_stride < 1:
        raise SystemExit("fcclip-segment: --video-stride must be >= 1")
    for path in args.inputs:
        if not path.exists():
            raise SystemExit(f"fcclip-segment: no such file or folder: {path}")

    from fcclip_core.jobs.cli import run_job
    from fcclip_core.jobs.predictor_spec import PredictorSpec
    from fcclip_core.vocabulary import load_vocabulary_file, parse_vocabulary

    try:
        vocabulary = None
        if args.vocabulary:
            vocabulary = parse_vocabulary(args.vocabulary, stuff=args.stuff)
        elif args.vocabulary_file:
            vocabulary = load_vocabulary_file(args.vocabulary_file)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"fcclip-segment: {exc}") from None
    spec = PredictorSpec(
        args.model_config, args.weights, clip_weights=args.clip_weights, allow_download=args.download,
        device=args.device, untrained=args.untrained, input_short_side=args.short_side,
        max_long_side=args.max_long_side, vocabulary=vocabulary, threads=args.threads,
        precision=args.precision, tf32=args.tf32, compile_mode=args.compile)
    if args.untrained:
        log.warning("UNTRAINED model (random weights): the masks and labels mean nothing")
    return run_job(args, spec, build_predictor)


def build_predictor(spec: "PredictorSpec") -> "Predictor":
    """The Predictor of ``spec``; a bad model config, weights or vocabulary ends the program with its reason."""
    try:
        predictor = spec.build()
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # WeightsError is a RuntimeError
        raise SystemExit(f"fcclip-segment: {exc}") from None
    log.info("precision %s (%s)", predictor.precision.name, predictor.precision.reason)
    return predictor


if __name__ == "__main__":
    sys.exit(main())
