"""Settings of the node's depth, 3D and tracking outputs, as one validated dataclass.

The parameters themselves are declared in ``node_config.PARAMETERS`` (one table for the whole
node); this module turns their values into the core's configs. No ROS imports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from fcclip_core.spatial.segments_3d import GeometryConfig
from fcclip_core.spatial.tracker import TrackerConfig


@dataclass(frozen=True)
class SpatialConfig:
    use_depth: bool = False  # subscribe depth + camera_info and publish 3D outputs
    depth_tolerance: float = 0.02  # seconds between colour and depth stamps that still pair
    depth_buffer: int = 10  # recent depth frames kept for pairing (never more: no backlog)
    publish_cloud: bool = False
    cloud_decimation: int = 4
    publish_markers: bool = True
    publish_detections_3d: bool = True
    tracking: bool = True
    publish_track_ids: bool = True
    geometry: GeometryConfig = GeometryConfig()
    tracker: TrackerConfig = TrackerConfig()


def spatial_config(v: Mapping[str, Any]) -> SpatialConfig:
    """The SpatialConfig of validated parameter values (names as in node_config.PARAMETERS)."""
    low = float(v["box_percentile"])
    return SpatialConfig(
        use_depth=bool(v["use_depth"]), depth_tolerance=float(v["depth_tolerance"]),
        depth_buffer=int(v["depth_buffer"]), publish_cloud=bool(v["publish_cloud"]),
        cloud_decimation=int(v["cloud_decimation"]), publish_markers=bool(v["publish_markers"]),
        publish_detections_3d=bool(v["publish_detections_3d"]), tracking=bool(v["tracking"]),
        publish_track_ids=bool(v["publish_track_ids"]),
        geometry=GeometryConfig(max_depth=float(v["max_depth"]), min_points=int(v["min_points"]),
                                box_percentiles=(low, 100.0 - low),
                                depth_scale=float(v["depth_scale"])),
        tracker=TrackerConfig(min_iou=float(v["tracker_min_iou"]),
                              max_missed=int(v["tracker_max_missed"]),
                              min_hits=int(v["tracker_min_hits"]),
                              max_distance=float(v["tracker_max_distance"])),
    )
