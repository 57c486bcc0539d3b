#!/usr/bin/env bash
# The README's demo: set up the environment (idempotent), then run the segmentation node on the
# bundled image stream and write overlays, label images and segments to a folder (it prints where).
#   scripts/demo.sh [--output DIR] [--weights CHECKPOINT] [--device cpu|cuda] ...   (see fcclip-demo --help)
# Without released weights (--weights or $FCCLIP_WEIGHTS) a tiny UNTRAINED model runs, and the
# output says so: its masks are not segmentation results.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
VENV="${FCCLIP_VENV:-$ROOT/.venv}"
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
exec "$VENV/bin/fcclip-demo" "$@"
