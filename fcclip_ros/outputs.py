"""The node's publishers: per-frame outputs of one Result, and the latched vocabulary topics.

All are lifecycle publishers: created when the node is configured, publishing only while it is
active. Every output topic exists once configured; which ones are published is a run-time
setting (the ``publish_*`` parameters), read per frame, and the tasks the model must run follow
from it. Expensive outputs (the overlay) are only computed while someone subscribes.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fcclip_ros import conversions as conv
from fcclip_ros.msg import SegmentArray
from fcclip_ros.msg import Vocabulary as VocabularyMsg
from fcclip_ros.node_config import NodeConfig, QosSettings

_RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE,
                "system_default": ReliabilityPolicy.SYSTEM_DEFAULT}
_DURABILITY = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL,
               "system_default": DurabilityPolicy.SYSTEM_DEFAULT}


def qos_profile(settings: QosSettings) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=settings.depth,
                      reliability=_RELIABILITY[settings.reliability], durability=_DURABILITY[settings.durability])


LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def import_vision_msgs() -> Any | None:
    """``vision_msgs.msg`` when installed (it is optional), else None."""
    try:
        import vision_msgs.msg as vision_msgs
    except ImportError:
        return None
    return vision_msgs


def frame_tasks(config: NodeConfig) -> frozenset[str]:
    """The model tasks the enabled outputs need (everything but semantic labels comes from panoptic)."""
    if config.publish_labels and config.labels_source == "semantic":
        return frozenset({"panoptic", "semantic"})
    return frozenset({"panoptic"})


class FrameOutputs:
    """Publishes everything derived from one frame's Result, all stamped with the frame's header."""

    def __init__(self, node: Any, config: NodeConfig, vision_msgs: Any | None) -> None:
        """``node``: a lifecycle node (its ``create_lifecycle_publisher`` makes the publishers)."""
        qos = qos_profile(config.output_qos)
        self._node = node
        self._vision_msgs = vision_msgs
        self.labels = node.create_lifecycle_publisher(Image, "~/labels", qos)
        self.segment_ids = node.create_lifecycle_publisher(Image, "~/segment_ids", qos)
        self.segments = node.create_lifecycle_publisher(SegmentArray, "~/segments", qos)
        self.detections = (node.create_lifecycle_publisher(vision_msgs.Detection2DArray, "~/detections", qos)
                           if vision_msgs is not None else None)
        self.overlay = node.create_lifecycle_publisher(Image, "~/overlay", qos)

    def destroy(self) -> None:
        """Remove the publishers from the node (cleanup)."""
        for publisher in (self.labels, self.segment_ids, self.segments, self.detections, self.overlay):
            if publisher is not None:
                self._node.destroy_lifecycle_publisher(publisher)

    def publish(self, result: Any, rgb: np.ndarray, header: Header, config: NodeConfig,
                tracks: Mapping[int, int] | None = None,
                geometry: Mapping[int, Any] | None = None) -> None:
        """Publish the outputs ``config`` enables (the settings of this frame). ``tracks``
        (segment id -> track id) and ``geometry`` (segment id -> 3D) fill the SegmentArray's
        track and 3D fields and the detections' ids."""
        panoptic = result.panoptic
        if config.publish_labels:
            labels = (conv.semantic_label_image(result.semantic) if config.labels_source == "semantic"
                      else conv.panoptic_label_image(panoptic))
            self.labels.publish(conv.labels_to_image(labels, header))
        if config.publish_segment_ids:
            self.segment_ids.publish(conv.segment_ids_to_image(panoptic.segment_ids, header))
        if config.publish_segments:
            self.segments.publish(conv.segment_array(panoptic, result.vocabulary_version, header,
                                                     tracks, geometry))
        if config.publish_detections and self.detections is not None:
            self.detections.publish(conv.detection_array(panoptic, header, self._vision_msgs, tracks))
        if config.publish_overlay and self.overlay.get_subscription_count() > 0:
            from fcclip_core.visualize import overlay

            picture = overlay(rgb, panoptic, alpha=config.overlay_alpha, draw_labels=config.overlay_labels)
            self.overlay.publish(conv.rgb_to_image(picture, header))


class VocabularyOutputs:
    """``~/vocabulary`` (and ``~/label_info`` with vision_msgs), transient-local: late joiners get it."""

    def __init__(self, node: Any, vision_msgs: Any | None) -> None:
        self._node = node
        self._vision_msgs = vision_msgs
        self.vocabulary = node.create_lifecycle_publisher(VocabularyMsg, "~/vocabulary", LATCHED)
        self.label_info = (node.create_lifecycle_publisher(vision_msgs.LabelInfo, "~/label_info", LATCHED)
                           if vision_msgs is not None else None)

    def destroy(self) -> None:
        for publisher in (self.vocabulary, self.label_info):
            if publisher is not None:
                self._node.destroy_lifecycle_publisher(publisher)

    def publish(self, vocabulary: Any, version: int) -> None:
        header = Header(stamp=self._node.get_clock().now().to_msg())
        self.vocabulary.publish(conv.vocabulary_message(vocabulary, version, header))
        if self.label_info is not None:
            self.label_info.publish(conv.label_info(vocabulary, header, self._vision_msgs))
