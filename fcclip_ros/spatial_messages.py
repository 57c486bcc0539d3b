"""The one definition of how a frame's result, depth and camera_info become its 3D messages.

The live node (``SpatialOutputs``) and the offline bag writer (``bag_segmenter``) both call
``frame_geometry`` and ``spatial_messages``, so a recording segmented offline carries the same
3D fields, ``detections_3d``, ``markers`` and ``cloud`` as the node publishes for those frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from fcclip_core.spatial.depth import DepthError
from fcclip_core.spatial.intrinsics import IntrinsicsError
from fcclip_core.spatial.segments_3d import GeometryConfig, LabelledCloud, Segment3D, panoptic_in_3d
from fcclip_ros import spatial_conversions as sconv
from fcclip_ros.conversions import FrameError

# Output names, relative to the node (``~/<name>``) or to the bag writer's per-topic namespace.
SPATIAL_OUTPUTS: tuple[str, ...] = ("detections_3d", "markers", "cloud")
# What an unusable depth image or camera_info raises: the frame then stays 2D.
UNUSABLE_DEPTH_INPUT = (FrameError, IntrinsicsError, DepthError)


@dataclass(frozen=True)
class SpatialMessageOptions:
    """Which 3D outputs exist (the node's ``publish_detections_3d/markers/cloud`` parameters)."""

    detections_3d: bool = True
    markers: bool = True
    cloud: bool = False


def frame_geometry(panoptic: Any, depth: Image, camera_info: CameraInfo, geometry: GeometryConfig,
                   cloud_decimation: int = 0) -> tuple[dict[int, Segment3D], LabelledCloud | None]:
    """(segment id -> 3D, labelled cloud or None) of one frame; ``cloud_decimation`` 0: no cloud.

    Raises one of ``UNUSABLE_DEPTH_INPUT`` (with the reason) for an unusable depth or camera_info.
    """
    intrinsics = sconv.camera_info_intrinsics(camera_info)
    depth_array = sconv.depth_to_array(depth)
    classes = np.zeros(int(panoptic.segment_ids.max(initial=0)) + 1, dtype=np.int64)
    for s in panoptic.segments:
        classes[s.id] = s.category_id
    segments, cloud = panoptic_in_3d(panoptic.segment_ids, classes, depth_array, intrinsics, geometry,
                                     cloud_decimation)
    return segments.segments(), cloud


def spatial_messages(panoptic: Any, geometry: Mapping[int, Segment3D], cloud: LabelledCloud | None,
                     tracks: Mapping[int, int] | None, header: Header, options: SpatialMessageOptions,
                     vision_msgs: Any | None) -> dict[str, Any]:
    """The 3D messages of one frame with depth, by output name, stamped with ``header``.

    Also with no segment in 3D (the markers' DELETEALL must clear RViz). ``detections_3d`` is
    absent without ``vision_msgs``; ``cloud`` when switched off or not computed.
    """
    tracks = tracks or {}
    messages: dict[str, Any] = {}
    if options.detections_3d and vision_msgs is not None:
        messages["detections_3d"] = sconv.detection3d_array(panoptic, geometry, tracks, header, vision_msgs)
    if options.markers:
        messages["markers"] = sconv.marker_array(panoptic, geometry, tracks, header)
    if options.cloud and cloud is not None:
        messages["cloud"] = sconv.cloud_message(cloud, tracks, header)
    return messages
