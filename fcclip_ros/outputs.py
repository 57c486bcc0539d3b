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

from fcclip_ros.frame_messages import FRAME_OUTPUTS, FrameMessageOptions, frame_messages, vocabulary_messages
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
    """The model tasks the enabled outputs need."""
    return message_options(config).tasks


class FrameOutputs:
    """Publishes everything derived from one frame's Result, all stamped with the frame's header.

    The messages come from ``fcclip_ros.frame_messages``, which the offline bag writer uses too.
    """

    def __init__(self, node: Any, config: NodeConfig, vision_msgs: Any | None) -> None:
        """``node``: a lifecycle node (its ``create_lifecycle_publisher`` makes the publishers)."""
        qos = qos_profile(config.output_qos)
        self._node = node
        self._vision_msgs = vision_msgs
        types = {"labels": Image, "segment_ids": Image, "segments": SegmentArray, "overlay": Image,
                 "detections": vision_msgs.Detection2DArray if vision_msgs is not None else None}
        # Every output topic exists once configured: which ones publish is a run-time setting.
        self._publishers = {name: node.create_lifecycle_publisher(types[name], f"~/{name}", qos)
                            for name in FRAME_OUTPUTS if types[name] is not None}
        self.overlay = self._publishers["overlay"]

    def destroy(self) -> None:
        """Remove the publishers from the node (cleanup)."""
        for publisher in self._publishers.values():
            self._node.destroy_lifecycle_publisher(publisher)

    def publish(self, result: Any, rgb: np.ndarray, header: Header, config: NodeConfig,
                tracks: Mapping[int, int] | None = None,
                geometry: Mapping[int, Any] | None = None) -> None:
        """Publish the outputs ``config`` enables (the settings of this frame). ``tracks``
        (segment id -> track id) and ``geometry`` (segment id -> 3D) fill the SegmentArray's
        track and 3D fields and the detections' ids."""
        options = message_options(config)
        with_overlay = options.overlay and self.overlay.get_subscription_count() > 0
        messages = frame_messages(result, rgb, header, options, self._vision_msgs, include_overlay=with_overlay,
                                  tracks=tracks, geometry=geometry)
        for name, message in messages.items():
            self._publishers[name].publish(message)


def message_options(config: NodeConfig) -> FrameMessageOptions:
    """The node's ``publish_*`` / labels / overlay parameters as frame-message options."""
    return FrameMessageOptions(
        labels=config.publish_labels, segment_ids=config.publish_segment_ids, segments=config.publish_segments,
        detections=config.publish_detections, overlay=config.publish_overlay, labels_source=config.labels_source,
        overlay_alpha=config.overlay_alpha, overlay_labels=config.overlay_labels)


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
        messages = vocabulary_messages(vocabulary, version, header, self._vision_msgs)
        self.vocabulary.publish(messages["vocabulary"])
        if self.label_info is not None:
            self.label_info.publish(messages["label_info"])
