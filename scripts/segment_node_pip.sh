#!/bin/sh
# `ros2 run fcclip_ros segment_node` entry point for the pip-only install: ros2 run looks in
# <prefix>/lib/fcclip_ros/, pip puts console scripts in <prefix>/bin/.
exec "$(dirname "$0")/../../bin/fcclip-segment-node" "$@"
