#!/usr/bin/env bash
# Create or update the project's virtual environment (pip-only set-up, no ROS install needed):
# pinned dependencies, then this package (ROS 2 interfaces, native op, Python packages).
# Idempotent: each step is skipped when its inputs did not change since it last succeeded.
#
#   FCCLIP_VENV   where the environment lives (default: <repo>/.venv)
#   PYTHON        the interpreter to create it with (default: python3.11, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FCCLIP_VENV:-$ROOT/.venv}"
# A Python of another ROS-wheels environment leaves this guard set; ours must bootstrap itself.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  PY="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
  if [ -z "$PY" ]; then
    log "no python3 found; install Python 3.11"; exit 1
  fi
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    log "$PY is $("$PY" -V 2>&1); the ROS 2 wheels exist for Python 3.11 only (set PYTHON=...)"; exit 1
  fi
  log "creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
STAMPS="$VENV/.fcclip_stamps"
mkdir -p "$STAMPS"
# Two set-ups at once (a demo and the tests, say) would rebuild over each other: take turns.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$STAMPS/lock"
  flock 9
fi

# Fingerprint of files (contents and names), so a step reruns exactly when its inputs change.
fingerprint() {
  (cd "$ROOT" && "$VPY" - "$@" <<'PY'
import hashlib, os, sys
digest = hashlib.sha256()
for top in sys.argv[1:]:
    paths = [top] if os.path.isfile(top) else sorted(
        os.path.join(d, f) for d, dirs, files in os.walk(top)
        if "__pycache__" not in d for f in files if not f.endswith((".pyc", ".so")))
    for path in paths:
        digest.update(path.encode())
        with open(path, "rb") as handle:
            digest.update(handle.read())
print(digest.hexdigest())
PY
  )
}

step_needed() { [ "$(cat "$STAMPS/$1" 2>/dev/null)" != "$2" ]; }

deps_print="$(fingerprint requirements.txt)"
if step_needed deps "$deps_print"; then
  log "installing pinned dependencies (first time: a few minutes)"
  "$VPY" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VPY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt"
  echo "$deps_print" > "$STAMPS/deps"
fi

# The build settings that change what gets compiled count as inputs too.
pkg_print="$(fingerprint setup.py pyproject.toml CMakeLists.txt package.xml msg srv scripts launch config \
  demo_images fcclip_core fcclip_ros)-ops:${FCCLIP_BUILD_OPS:-1}-cuda:${FCCLIP_WITH_CUDA:-auto}-arch:${TORCH_CUDA_ARCH_LIST:-}"
if step_needed package "$pkg_print"; then
  log "building and installing fcclip_ros (interfaces, native op, Python packages)"
  # setuptools never removes files from its staging folder: clear it so a module deleted from
  # the tree cannot linger in the install. Compiled objects (build/temp.*) stay for speed.
  rm -rf "$ROOT"/build/lib.* "$ROOT"/build/bdist.*
  (cd "$ROOT" && "$VPY" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall .)
  echo "$pkg_print" > "$STAMPS/package"
fi
# The real ros2 CLI, launch, launch_testing and vision_msgs are not on the package index; a
# checkout with ../shared beside it (developers, CI) adds them from pinned sources. Without it
# the product works and the tests that need them skip visibly.
ROS_TOOLS="${FCCLIP_ROS_TOOLS:-$ROOT/../shared/ros-tools}"
if [ -x "$ROS_TOOLS/install.sh" ]; then
  tools_print="$(cd "$ROS_TOOLS" && sha256sum install.sh src/*.tar.gz | sha256sum | cut -d' ' -f1)"
  if step_needed ros_tools "$tools_print"; then
    log "adding the ros2 CLI, launch, launch_testing and vision_msgs from $ROS_TOOLS"
    "$ROS_TOOLS/install.sh" "$VENV"
    echo "$tools_print" > "$STAMPS/ros_tools"
  fi
fi
log "environment ready: $VENV"
