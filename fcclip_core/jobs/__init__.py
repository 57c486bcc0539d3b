"""Long segmentation jobs over recorded data: planning, resumable work units, local and Ray runners.

Nothing here imports ROS. ROS 2 recordings (MCAP) are read as a file format (``mcap``) for
planning and merging; decoding their images and encoding our messages is ROS work and lives in
``fcclip_ros.bag_segmenter``, reached through the explicit hook in ``fcclip_core.jobs.units``.
"""
