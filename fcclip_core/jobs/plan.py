"""A job: the inputs expanded into work units, what is already done, and what cannot be read.

Recordings are cut into time chunks whose part files live in a hidden folder beside the output
(``.<name>.parts``) together with the job description they belong to; a rerun with the same
description reuses the finished parts, a different one starts over. Finished outputs are kept.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from fcclip_core.jobs.mcap_input import RecordingError, plan_recording
from fcclip_core.jobs.mcap_merge import merge_parts
from fcclip_core.jobs.units import BAG_DEPTH_CHECK, BagOutputOptions, FramesUnit, McapChunkUnit, WorkUnit, load_hook

RECORDING_SUFFIXES = {".mcap"}
ROS1_BAG_SUFFIXES = {".bag"}


@dataclass(frozen=True)
class JobOptions:
    output_dir: Path
    every: int = 1
    max_frames: Optional[int] = None  # per video
    track: bool = True  # persistent track ids for video frames (one tracker per video)
    topics: tuple[str, ...] = ()
    start_s: Optional[float] = None
    end_s: Optional[float] = None
    chunk_s: float = 60.0
    bag: BagOutputOptions = BagOutputOptions()
    model_key: str = ""  # segment_files sets it (PredictorSpec.output_key): parts of another model are not reused


@dataclass
class RecordingJob:
    source: Path
    output: Path
    parts_dir: Path
    units: list[McapChunkUnit]


@dataclass
class Job:
    units: list[WorkUnit] = field(default_factory=list)
    recordings: list[RecordingJob] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    finished: list[Path] = field(default_factory=list)  # recording outputs an earlier run completed

    @property
    def frames(self) -> int:
        return sum(u.frames for u in self.units)


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Files to segment: the inputs, with folders replaced by the images, videos and recordings inside."""
    from fcclip_core.tools.segment import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    files = []
    for path in inputs:
        if path.is_dir():
            known = IMAGE_SUFFIXES | VIDEO_SUFFIXES | RECORDING_SUFFIXES | ROS1_BAG_SUFFIXES
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in known)
        else:
            files.append(path)
    return files


def _video_frames(path: Path, every: int, max_frames: Optional[int]) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    capture.release()
    frames = -(-count // every)
    return min(frames, max_frames) if max_frames is not None else frames


def plan_job(inputs: Sequence[Path], options: JobOptions) -> Job:
    """All units of a job; unreadable recordings go to ``failures`` with the reason.

    Raises ValueError for depth settings the node would refuse.
    """
    from fcclip_core.tools.segment import VIDEO_SUFFIXES

    if options.bag.depth is not None:  # the node's rules for the 3D settings; raises ValueError
        load_hook(BAG_DEPTH_CHECK)(options.bag.depth)
    job = Job()
    outputs: dict[Path, Path] = {}
    for path in expand_inputs(inputs):
        suffix = path.suffix.lower()
        if suffix in RECORDING_SUFFIXES or suffix in ROS1_BAG_SUFFIXES:
            try:
                _plan_recording(job, path, options, outputs)
            except RecordingError as exc:
                job.failures[str(path)] = str(exc)
        elif suffix in VIDEO_SUFFIXES:
            job.units.append(FramesUnit(path, options.output_dir, options.every, options.max_frames,
                                        _video_frames(path, options.every, options.max_frames),
                                        track=options.track))
        else:
            job.units.append(FramesUnit(path, options.output_dir, options.every, options.max_frames, 1))
    return job


def _plan_recording(job: Job, path: Path, options: JobOptions, outputs: dict[Path, Path]) -> None:
    output = options.output_dir / f"{path.stem}.mcap"
    if output.resolve() == path.resolve():
        raise RecordingError(f"{path}: the output would overwrite the input; choose another output folder")
    if output in outputs:
        raise RecordingError(f"{path}: its output {output} is also the output of {outputs[output]} (same name)")
    outputs[output] = path
    if output.exists():
        job.finished.append(output)
        return
    depth = options.bag.depth
    plan = plan_recording(path, options.topics, options.start_s, options.end_s, options.every, options.chunk_s,
                          depth.topics if depth is not None else None)
    if not plan.chunks:
        raise RecordingError(f"{path}: no image messages on {', '.join(options.topics) or 'its image topics'} "
                             "in the chosen time range")
    parts_dir = options.output_dir / f".{path.stem}.parts"
    _claim_parts_dir(parts_dir, path, options)
    units = [McapChunkUnit(chunk, parts_dir / f"part-{chunk.index:05d}.mcap", options.bag, options.every)
             for chunk in plan.chunks]
    job.recordings.append(RecordingJob(path, output, parts_dir, units))
    job.units += units


def _claim_parts_dir(parts_dir: Path, source: Path, options: JobOptions) -> None:
    """Keep the parts of an interrupted run of this same job; start over for any other."""
    stat = source.stat()
    description = {"source": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                   "topics": list(options.topics), "start_s": options.start_s, "end_s": options.end_s,
                   "every": options.every, "chunk_s": options.chunk_s, "bag": asdict(options.bag),
                   "model": options.model_key}
    marker = parts_dir / "job.json"
    if marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == json.loads(json.dumps(description)):
                return
        except ValueError:
            pass
    shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir(parents=True)
    marker.write_text(json.dumps(description, indent=1), encoding="utf-8")


def finish_recordings(job: Job) -> dict[Path, int]:
    """Merge every recording whose parts are all done; {output: messages}. Parts are then removed."""
    merged = {}
    for recording in job.recordings:
        parts = [u.part_path for u in recording.units]
        if all(p.exists() for p in parts):
            merged[recording.output] = merge_parts(parts, recording.output)
            shutil.rmtree(recording.parts_dir, ignore_errors=True)
    return merged
