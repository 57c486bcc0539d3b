#!/bin/sh
# `ros2 run fcclip_ros image_player` entry point for the pip-only install (see segment_node_pip.sh).
exec "$(dirname "$0")/../../bin/fcclip-image-player" "$@"
