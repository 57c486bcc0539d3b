#!/usr/bin/env bash
# Prove the GPU path on a machine with an NVIDIA GPU: build the native op in place, run the GPU
# tests, CUDA-vs-CPU parity on the fixtures and the latency matrix (README, "Checking a GPU
# machine"). Runs from the checkout, nothing installed; arguments go to
# `python -m fcclip_core.tools.gpu_check` (--wheels DIR, --device, --quick, --out ...).
#
#   PYTHON   the interpreter with torch (default: python3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m fcclip_core.tools.gpu_check "$@"
