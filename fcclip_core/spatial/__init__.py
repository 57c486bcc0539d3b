"""Segments in space and time: 3D geometry from a registered depth image, and track ids that
persist across frames. ROS-free; the node only pairs messages and converts the results."""
