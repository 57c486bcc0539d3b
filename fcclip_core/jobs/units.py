"""Work units: the pieces a job is cut into, each run by one Predictor and each resumable.

A unit writes its outputs under temporary names and renames them when complete, so an
interrupted job leaves no half-written file and a rerun skips what is done. Units are plain
data, so the same unit runs in this process or in a Ray actor with identical results.

MCAP units need ROS message types to decode images and encode our outputs; that code lives in
the ROS package and is reached through ``MCAP_CHUNK_RUNNER``, an explicit import path loaded
only when a job has MCAP input (``fcclip_core`` itself never imports ROS).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from fcclip_core.jobs.mcap_input import McapChunk
from fcclip_core.jobs.report import UnitReport

MCAP_CHUNK_RUNNER = "fcclip_ros.bag_segmenter:segment_chunk"
# Validates BagDepthOptions with the node's parameter rules (raises ValueError) before any model loads.
BAG_DEPTH_CHECK = "fcclip_ros.bag_depth:bag_spatial_config"

ProgressCallback = Callable[[int], None]  # called with the number of frames just finished


@dataclass(frozen=True)
class BagDepthOptions:
    """Depth and camera_info of the one segmented image topic, and the 3D settings.

    Names as the node's parameters; a setting left None takes the node's default (the bag writer
    reads them from the node's parameter table, so the two never disagree).
    """

    depth_topic: str
    camera_info_topic: str
    depth_scale: Optional[float] = None
    depth_tolerance: Optional[float] = None
    max_depth: Optional[float] = None
    min_points: Optional[int] = None
    publish_cloud: bool = False
    cloud_decimation: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.depth_topic or not self.camera_info_topic:
            raise ValueError("depth needs both a depth topic and a camera_info topic")
        if self.depth_topic == self.camera_info_topic:
            raise ValueError(f"the depth and camera_info topics are the same ({self.depth_topic})")

    @property
    def topics(self) -> tuple[str, str]:
        return (self.depth_topic, self.camera_info_topic)


@dataclass(frozen=True)
class BagOutputOptions:
    """What the bag writer produces (the counterpart of the node's publish_* parameters)."""

    namespace: str = "/fcclip"
    outputs: tuple[str, ...] = ("labels", "segment_ids", "segments", "detections", "overlay")
    labels_source: str = "panoptic"
    overlay_alpha: float = 0.5
    overlay_labels: bool = True
    copy_inputs: bool = True
    track: bool = True  # track ids per image topic, as the live node's default tracker gives them
    depth: Optional[BagDepthOptions] = None  # 3D outputs of the one image topic (as the node's use_depth)

    def __post_init__(self) -> None:
        if not self.namespace.startswith("/") or self.namespace.endswith("/") and self.namespace != "/":
            raise ValueError(f"namespace must be absolute without a trailing '/', e.g. /fcclip; got {self.namespace!r}")

    def topic(self, input_topic: str, output: str) -> str:
        """The output topic of ``output`` for frames of ``input_topic`` (e.g. /fcclip/camera/image_raw/labels)."""
        return f"{self.namespace.rstrip('/')}{input_topic}/{output}"

    def vocabulary_topic(self, output: str) -> str:
        return f"{self.namespace.rstrip('/')}/{output}"


@dataclass(frozen=True)
class FramesUnit:
    """One image file or one video; outputs as ``fcclip-segment`` always wrote them, one set per frame."""

    source: Path
    output_dir: Path
    every: int = 1
    max_frames: Optional[int] = None
    frames: int = 1  # expected frames (progress only)
    track: bool = False  # give a video's segments persistent track ids

    @property
    def file(self) -> Path:
        return self.source


@dataclass(frozen=True)
class McapChunkUnit:
    """One time chunk of a recording, written to ``part_path`` (merged into the output at the end)."""

    chunk: McapChunk
    part_path: Path
    options: BagOutputOptions
    every: int = 1

    @property
    def file(self) -> Path:
        return self.chunk.source

    @property
    def frames(self) -> int:
        return self.chunk.frames


WorkUnit = Union[FramesUnit, McapChunkUnit]


def load_hook(reference: str) -> Callable[..., Any]:
    """The function named by ``"module:function"``."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def run_unit(predictor: Any, unit: WorkUnit, progress: ProgressCallback = lambda n: None) -> UnitReport:
    """Run one unit with ``predictor``; a unit whose outputs exist already is skipped."""
    if isinstance(unit, McapChunkUnit):
        if unit.part_path.exists():
            return UnitReport(resumed=unit.frames)
        return load_hook(MCAP_CHUNK_RUNNER)(predictor, unit, progress)
    from fcclip_core.jobs.frames_unit import segment_frames

    return segment_frames(predictor, unit, progress)
