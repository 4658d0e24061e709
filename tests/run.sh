#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: bash tests/run.sh [pytest args]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/examples/setup.sh"
cd "$root"
exec "${ECGTOOL_VENV:-$root/.venv}/bin/python" -m pytest -q "$@"
