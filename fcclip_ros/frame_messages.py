"""The one definition of how a segmentation Result becomes the node's output messages.

The live node publishes these messages and the offline bag writer (``fcclip_ros.bag``) serialises
the very same objects into MCAP, so a recording segmented offline and the same stream through the
node carry identical messages: both go through ``frame_messages`` and ``vocabulary_messages``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from std_msgs.msg import Header

from fcclip_ros import conversions as conv

# Output names, relative to the node (``~/<name>``) or to the bag writer's per-topic namespace.
FRAME_OUTPUTS: tuple[str, ...] = ("labels", "segment_ids", "segments", "detections", "overlay")
VOCABULARY_OUTPUTS: tuple[str, ...] = ("vocabulary", "label_info")


@dataclass(frozen=True)
class FrameMessageOptions:
    """Which per-frame outputs exist and how they are drawn (the node's ``publish_*`` parameters)."""

    labels: bool = True
    segment_ids: bool = True
    segments: bool = True
    detections: bool = True
    overlay: bool = True
    labels_source: str = "panoptic"  # or "semantic"
    overlay_alpha: float = 0.5
    overlay_labels: bool = True

    def __post_init__(self) -> None:
        if self.labels_source not in ("panoptic", "semantic"):
            raise ValueError(f"labels_source must be 'panoptic' or 'semantic', got {self.labels_source!r}")

    @property
    def tasks(self) -> frozenset[str]:
        """The model tasks these outputs need (everything but semantic labels comes from panoptic)."""
        if self.labels and self.labels_source == "semantic":
            return frozenset({"panoptic", "semantic"})
        return frozenset({"panoptic"})


def frame_messages(result: Any, rgb: np.ndarray, header: Header, options: FrameMessageOptions,
                   vision_msgs: Any | None, include_overlay: bool = True,
                   tracks: Mapping[int, int] | None = None,
                   geometry: Mapping[int, Any] | None = None) -> dict[str, Any]:
    """The output messages of one frame, by output name, all stamped with the frame's ``header``.

    Outputs switched off in ``options`` are absent; so are detections without ``vision_msgs`` and
    the overlay when ``include_overlay`` is False (the node draws it only for subscribers).
    ``tracks`` (segment id -> track id) and ``geometry`` (segment id -> 3D) fill the segments'
    track and 3D fields and the detections' ids, when the caller tracks or has depth.
    """
    panoptic = result.panoptic
    messages: dict[str, Any] = {}
    if options.labels:
        labels = (conv.semantic_label_image(result.semantic) if options.labels_source == "semantic"
                  else conv.panoptic_label_image(panoptic))
        messages["labels"] = conv.labels_to_image(labels, header)
    if options.segment_ids:
        messages["segment_ids"] = conv.segment_ids_to_image(panoptic.segment_ids, header)
    if options.segments:
        messages["segments"] = conv.segment_array(panoptic, result.vocabulary_version, header, tracks, geometry)
    if options.detections and vision_msgs is not None:
        messages["detections"] = conv.detection_array(panoptic, header, vision_msgs, tracks)
    if options.overlay and include_overlay:
        from fcclip_core.visualize import overlay

        picture = overlay(rgb, panoptic, alpha=options.overlay_alpha, draw_labels=options.overlay_labels)
        messages["overlay"] = conv.rgb_to_image(picture, header)
    return messages


def vocabulary_messages(vocabulary: Any, version: int, header: Header, vision_msgs: Any | None) -> dict[str, Any]:
    """``vocabulary`` (and ``label_info`` with vision_msgs) describing the active class list."""
    messages: dict[str, Any] = {"vocabulary": conv.vocabulary_message(vocabulary, version, header)}
    if vision_msgs is not None:
        messages["label_info"] = conv.label_info(vocabulary, header, vision_msgs)
    return messages
