#!/usr/bin/env bash
# Run the whole test suite in the project's environment (set up first, idempotently).
# Extra arguments go to pytest, e.g. scripts/test.sh test/core -k parity
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
VENV="${FCCLIP_VENV:-$ROOT/.venv}"
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
cd "$ROOT"
# The pytest script (not `python -m pytest`) keeps the checkout off sys.path, so the tests
# exercise the installed package, generated interfaces and native op included.
exec "$VENV/bin/pytest" "$@"
