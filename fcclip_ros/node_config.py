"""The node's parameters: one table of names, defaults and meanings, and a validated dataclass.

The table is the single place a parameter is defined: the node declares what it lists (with the
description shown by ``ros2 param describe``), ``config/segment.yaml`` documents the same names,
and ``parse_config`` turns whatever values arrived into a ``NodeConfig`` or raises ``ConfigError``
naming every problem at once, so a bad launch fails at start with one clear message.

This module imports no ROS package, so it is testable as plain Python.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from fcclip_ros.spatial_config import SpatialConfig, spatial_config

ParamValue = Any  # str | int | float | bool | list[str] | None (None: not set)


class ConfigError(ValueError):
    """Invalid node parameters; the message lists every problem."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: ParamValue
    kind: type  # str, int, float, bool or list (of str)
    description: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    runtime: bool = False  # may change while the node runs (takes effect on the next frame)


RELIABILITY = ("best_effort", "reliable", "system_default")
DURABILITY = ("volatile", "transient_local", "system_default")

PARAMETERS: tuple[ParamSpec, ...] = (
    # Lifecycle.
    ParamSpec("autostart", True, bool,
              "configure and activate by itself at start; false: wait for a lifecycle manager or "
              "`ros2 lifecycle set`"),
    # Model.
    ParamSpec("model_config", "convnext_large", str,
              "model config: the name of a shipped config (e.g. convnext_large) or a YAML file path"),
    ParamSpec("weights", "", str,
              "checkpoint file (.pth or .safetensors); empty: $FCCLIP_WEIGHTS, then the weights cache "
              "(fcclip-weights)"),
    ParamSpec("clip_weights", "", str,
              "open_clip weights completing a released .pth checkpoint; empty: from the weights cache"),
    ParamSpec("allow_download", False, bool,
              "download the released weights into the cache when they are not there yet"),
    ParamSpec("allow_untrained", False, bool,
              "run with random weights when no checkpoint is found (tests and demos only: masks are meaningless)"),
    ParamSpec("device", "auto", str, "auto, cpu, cuda or cuda:N"),
    ParamSpec("cpu_threads", 0, int,
              "CPU threads for inference (torch intra-op threads); 0: torch's default, one per core. On a small "
              "computer, one fewer than its cores keeps frame intake and other nodes responsive",
              minimum=0, maximum=1024, runtime=True),
    ParamSpec("precision", "fp32", str,
              "network precision, read at configure: fp32; bf16 or fp16 (autocast, FC-CLIP's probabilities stay "
              "float32); auto: bf16 on GPUs that have it and on CPUs with AMX, else fp32",
              choices=("fp32", "bf16", "fp16", "auto")),
    ParamSpec("tf32", False, bool, "allow TF32 matrix products on a CUDA device (faster, ~1e-3 relative drift)"),
    ParamSpec("input_short_side", 0, int,
              "resize the short image side to this many pixels before the model; 0: the model config's value",
              minimum=0, maximum=4096, runtime=True),
    ParamSpec("max_long_side", 0, int,
              "upper bound for the long side after resizing; 0: the model config's value", minimum=0, maximum=8192),
    # Thresholds (negative: the model config's value).
    ParamSpec("object_mask_threshold", -1.0, float,
              "minimum class probability for a query to produce a segment; negative: the model config's value",
              maximum=1.0, runtime=True),
    ParamSpec("overlap_threshold", -1.0, float,
              "minimum fraction of a query's mask that must remain visible to keep it as a segment; "
              "negative: the model config's value", maximum=1.0, runtime=True),
    ParamSpec("ensemble_alpha", -1.0, float,
              "weight of the out-of-vocabulary (CLIP) probability for classes seen in training; "
              "negative: the model config's value", maximum=1.0, runtime=True),
    ParamSpec("ensemble_beta", -1.0, float,
              "weight of the out-of-vocabulary (CLIP) probability for unseen classes; "
              "negative: the model config's value", maximum=1.0, runtime=True),
    # Vocabulary.
    ParamSpec("vocabulary", None, list,
              "initial classes, one string each: a label optionally followed by comma-separated synonyms; "
              "empty: vocabulary_file, else the COCO panoptic classes"),
    ParamSpec("vocabulary_stuff", None, list,
              "labels of the entries of `vocabulary` that are stuff (amorphous regions); all others are things"),
    ParamSpec("vocabulary_file", "", str, "initial classes from a vocabulary file (instead of `vocabulary`)"),
    ParamSpec("vocabulary_state_file", "", str,
              "file that keeps the vocabulary across restarts: written on every accepted change, "
              "and when it exists at start it replaces vocabulary/vocabulary_file; empty: off"),
    ParamSpec("max_classes", 1000, int, "largest vocabulary the service accepts", minimum=1, maximum=65534),
    ParamSpec("max_label_length", 256, int,
              "longest class string (label plus synonyms, characters) the service accepts", minimum=1),
    ParamSpec("text_cache_max_names", 20000, int,
              "class names whose text embeddings are kept (least recently used forgotten beyond it)", minimum=1),
    ParamSpec("vocabulary_queue_depth", 64, int,
              "~/set_vocabulary requests waiting their turn; beyond it a request is answered 'busy'",
              minimum=1, maximum=10000),
    # Input.
    ParamSpec("image_transport", "raw", str,
              "raw: subscribe sensor_msgs/Image on `image`; compressed: CompressedImage on `image/compressed`",
              choices=("raw", "compressed")),
    ParamSpec("image_qos.reliability", "best_effort", str, "input subscription reliability", choices=RELIABILITY),
    ParamSpec("image_qos.durability", "volatile", str, "input subscription durability", choices=DURABILITY),
    ParamSpec("image_qos.depth", 1, int, "input subscription history depth", minimum=1, maximum=1000),
    ParamSpec("max_image_pixels", 40_000_000, int, "frames with more pixels are rejected as corrupt", minimum=1),
    ParamSpec("max_image_side", 16384, int, "frames with a longer side are rejected as corrupt", minimum=1),
    ParamSpec("image_16bit_max", 65535, int,
              "16-bit encodings (mono16, rgb16, ...): this value maps to white (4095 for 12-bit sensors)",
              minimum=1, maximum=65535),
    # Outputs.
    ParamSpec("publish_labels", True, bool, "publish ~/labels (mono16 class ids, 65535 = unlabelled)", runtime=True),
    ParamSpec("publish_segment_ids", True, bool, "publish ~/segment_ids (32SC1 panoptic segment ids, 0 = none)", runtime=True),
    ParamSpec("publish_segments", True, bool, "publish ~/segments (fcclip_ros/SegmentArray)", runtime=True),
    ParamSpec("publish_detections", True, bool,
              "publish ~/detections (vision_msgs/Detection2DArray, thing segments) when vision_msgs is installed", runtime=True),
    ParamSpec("publish_overlay", True, bool, "publish ~/overlay (rgb8 colour overlay; computed only when subscribed)", runtime=True),
    ParamSpec("labels_source", "panoptic", str,
              "panoptic: ~/labels is the class of each pixel's segment (consistent with ~/segment_ids); "
              "semantic: the dense per-pixel argmax class", choices=("panoptic", "semantic"), runtime=True),
    ParamSpec("overlay_alpha", 0.5, float, "overlay colour opacity", minimum=0.0, maximum=1.0, runtime=True),
    ParamSpec("overlay_labels", True, bool, "draw label text on the overlay", runtime=True),
    ParamSpec("output_qos.reliability", "reliable", str, "reliability of the per-frame outputs", choices=RELIABILITY),
    ParamSpec("output_qos.depth", 5, int, "history depth of the per-frame outputs", minimum=1, maximum=1000),
    # Depth, 3D and tracking (see fcclip_ros/spatial_config.py).
    ParamSpec("use_depth", False, bool,
              "subscribe `depth` (registered to the colour image; 16UC1 mm or 32FC1 m) and `camera_info`, "
              "and publish ~/detections_3d, ~/markers and (publish_cloud) ~/cloud; QoS as image_qos"),
    ParamSpec("depth_scale", 0.0, float,
              "metres per depth unit; 0: from the encoding (16UC1: 0.001, 32FC1: 1)", minimum=0.0),
    ParamSpec("depth_tolerance", 0.02, float,
              "largest difference in seconds between the colour and depth stamps that still pair; "
              "frames without a match are published in 2D only", minimum=0.0, maximum=10.0),
    ParamSpec("depth_buffer", 10, int, "recent depth frames kept for pairing (older ones are dropped)",
              minimum=1, maximum=100),
    ParamSpec("max_depth", 10.0, float, "metres; farther depth counts as invalid", minimum=0.01),
    ParamSpec("min_points", 20, int, "valid depth pixels a segment needs to get 3D", minimum=1),
    ParamSpec("box_percentile", 2.0, float,
              "3D boxes span this percentile to 100 minus it of the segment's points, per axis",
              minimum=0.0, maximum=49.0),
    ParamSpec("publish_detections_3d", True, bool,
              "with use_depth: ~/detections_3d (vision_msgs/Detection3DArray) when vision_msgs is installed"),
    ParamSpec("publish_markers", True, bool, "with use_depth: ~/markers (visualization_msgs/MarkerArray)"),
    ParamSpec("publish_cloud", False, bool,
              "with use_depth: ~/cloud (sensor_msgs/PointCloud2: x y z label segment_id track_id)"),
    ParamSpec("cloud_decimation", 4, int, "~/cloud keeps every N-th row and column", minimum=1, maximum=64),
    ParamSpec("tracking", True, bool,
              "give segments persistent track ids (Segment.track_id, detection ids, ~/track_ids)"),
    ParamSpec("publish_track_ids", True, bool, "with tracking: ~/track_ids (32SC1 track-id image, 0 = none)"),
    ParamSpec("tracker_min_iou", 0.2, float, "least mask IoU for a segment to continue a track",
              minimum=0.01, maximum=1.0),
    ParamSpec("tracker_max_missed", 5, int, "frames a track survives unseen", minimum=0, maximum=1000),
    ParamSpec("tracker_min_hits", 2, int, "frames a new track needs before its id is published (0 until then)",
              minimum=1, maximum=100),
    ParamSpec("tracker_max_distance", 1.0, float,
              "with depth: metres between 3D centroids beyond which a segment never continues a track",
              minimum=0.001),
    # Diagnostics.
    ParamSpec("diagnostics_period", 1.0, float, "seconds between /diagnostics messages", minimum=0.05),
    ParamSpec("stats_window", 300, int, "number of recent frames the latency percentiles cover", minimum=1),
)

SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}
# Changed only through ~/set_vocabulary, which mirrors the vocabulary in them.
VOCABULARY_PARAMETERS = frozenset({"vocabulary", "vocabulary_stuff", "vocabulary_file"})
RUNTIME_PARAMETERS = tuple(spec.name for spec in PARAMETERS if spec.runtime)
# Parameters rclpy itself declares or interprets; never reported as unknown.
_ROS_OWNED = re.compile(r"^(use_sim_time|start_type_description_service|qos_overrides\..*)$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class QosSettings:
    reliability: str
    durability: str
    depth: int


@dataclass(frozen=True)
class NodeConfig:
    autostart: bool
    model_config: str
    weights: str
    clip_weights: str
    allow_download: bool
    allow_untrained: bool
    device: str
    cpu_threads: int | None
    precision: str
    tf32: bool
    input_short_side: int | None
    max_long_side: int | None
    object_mask_threshold: float | None
    overlap_threshold: float | None
    ensemble_alpha: float | None
    ensemble_beta: float | None
    vocabulary: tuple[str, ...]
    vocabulary_stuff: tuple[str, ...]
    vocabulary_file: str
    vocabulary_state_file: str
    max_classes: int
    max_label_length: int
    text_cache_max_names: int
    vocabulary_queue_depth: int
    image_transport: str
    image_qos: QosSettings
    max_image_pixels: int
    max_image_side: int
    image_16bit_max: int
    publish_labels: bool
    publish_segment_ids: bool
    publish_segments: bool
    publish_detections: bool
    publish_overlay: bool
    labels_source: str
    overlay_alpha: float
    overlay_labels: bool
    output_qos: QosSettings
    diagnostics_period: float
    stats_window: int
    spatial: SpatialConfig = SpatialConfig()


_UNSET = object()  # a parameter set to "not set" at run time (ros2 param delete): not a valid value


def _coerce(spec: ParamSpec, value: ParamValue) -> tuple[ParamValue, str | None]:
    """The value as the spec's kind, or an error text."""
    if value is _UNSET:
        return None, f"{spec.name} cannot be unset"
    if value is None:
        value = spec.default
    if spec.kind is list:
        if value is None:
            return (), None
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value), None
        return None, f"{spec.name} must be a list of strings, got {value!r}"
    if spec.kind is bool:
        if isinstance(value, bool):
            return value, None
        return None, f"{spec.name} must be true or false, got {value!r}"
    if spec.kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            number: float = value
        else:
            return None, f"{spec.name} must be an integer, got {value!r}"
    elif spec.kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            number = float(value)
        else:
            return None, f"{spec.name} must be a number, got {value!r}"
    else:
        if not isinstance(value, str):
            return None, f"{spec.name} must be a string, got {value!r}"
        if spec.choices and value not in spec.choices:
            return None, f"{spec.name} must be one of {', '.join(spec.choices)}; got {value!r}"
        return value, None
    if spec.minimum is not None and number < spec.minimum:
        return None, f"{spec.name} must be >= {spec.minimum:g}, got {value!r}"
    if spec.maximum is not None and number > spec.maximum:
        return None, f"{spec.name} must be <= {spec.maximum:g}, got {value!r}"
    return number, None


def runtime_problems(changes: Mapping[str, ParamValue]) -> list[str]:
    """What is wrong with new values of run-time parameters (empty when they are all valid)."""
    problems = []
    for name, value in changes.items():
        spec = SPECS[name]
        _, problem = _coerce(spec, value if value is not None else _UNSET)
        if problem:
            problems.append(problem)
    return problems


def unknown_parameters(names: Iterable[str]) -> list[str]:
    """Names that are neither ours nor rclpy's: typos in a params file or on the command line."""
    return sorted(n for n in names if n not in SPECS and not _ROS_OWNED.match(n))


def parse_config(values: Mapping[str, ParamValue]) -> NodeConfig:
    """Validate raw parameter values (missing names take their defaults)."""
    problems: list[str] = []
    unknown = unknown_parameters(values)
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(SPECS)})")
    v: dict[str, ParamValue] = {}
    for spec in PARAMETERS:
        value, problem = _coerce(spec, values.get(spec.name))
        if problem:
            problems.append(problem)
        v[spec.name] = value
    if isinstance(v["device"], str) and not _DEVICE.match(v["device"]):
        problems.append(f"device must be auto, cpu, cuda or cuda:N; got {v['device']!r}")
    if isinstance(v["model_config"], str) and not v["model_config"].strip():
        problems.append("model_config must name a shipped model config or a config file")
    if v["vocabulary"] and v["vocabulary_file"]:
        problems.append("set either vocabulary or vocabulary_file, not both")
    if v["vocabulary_stuff"] and not v["vocabulary"]:
        problems.append("vocabulary_stuff is only meaningful together with vocabulary")
    if problems:
        raise ConfigError("invalid parameters:\n  - " + "\n  - ".join(problems))

    def positive_or_none(name: str) -> Any:
        return v[name] if v[name] > 0 else None

    def threshold(name: str) -> float | None:
        return v[name] if v[name] >= 0 else None

    return NodeConfig(
        autostart=v["autostart"], model_config=v["model_config"].strip(), weights=v["weights"].strip(), clip_weights=v["clip_weights"].strip(),
        allow_download=v["allow_download"], allow_untrained=v["allow_untrained"], device=v["device"],
        cpu_threads=positive_or_none("cpu_threads"), precision=v["precision"], tf32=v["tf32"],
        input_short_side=positive_or_none("input_short_side"), max_long_side=positive_or_none("max_long_side"),
        object_mask_threshold=threshold("object_mask_threshold"),
        overlap_threshold=threshold("overlap_threshold"),
        ensemble_alpha=threshold("ensemble_alpha"), ensemble_beta=threshold("ensemble_beta"),
        vocabulary=v["vocabulary"], vocabulary_stuff=v["vocabulary_stuff"],
        vocabulary_file=v["vocabulary_file"].strip(), vocabulary_state_file=v["vocabulary_state_file"].strip(),
        max_classes=int(v["max_classes"]), max_label_length=int(v["max_label_length"]),
        text_cache_max_names=int(v["text_cache_max_names"]), vocabulary_queue_depth=int(v["vocabulary_queue_depth"]),
        image_transport=v["image_transport"],
        image_qos=QosSettings(v["image_qos.reliability"], v["image_qos.durability"], int(v["image_qos.depth"])),
        max_image_pixels=int(v["max_image_pixels"]), max_image_side=int(v["max_image_side"]),
        image_16bit_max=int(v["image_16bit_max"]),
        publish_labels=v["publish_labels"], publish_segment_ids=v["publish_segment_ids"],
        publish_segments=v["publish_segments"], publish_detections=v["publish_detections"],
        publish_overlay=v["publish_overlay"], labels_source=v["labels_source"],
        overlay_alpha=float(v["overlay_alpha"]), overlay_labels=v["overlay_labels"],
        output_qos=QosSettings(v["output_qos.reliability"], "volatile", int(v["output_qos.depth"])),
        diagnostics_period=float(v["diagnostics_period"]), stats_window=int(v["stats_window"]),
        spatial=spatial_config(v),
    )
