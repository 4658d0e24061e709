#!/usr/bin/env bash
# Set up a virtual environment with ecgtool and its test tools; safe to rerun.
#
#   bash examples/setup.sh            # creates ./.venv (or $ECGTOOL_VENV)
#
# torch is installed only when the environment has none, so a GPU build that is
# already there stays. The spec defaults to torch==2.13.0; set ECGTOOL_TORCH to
# choose another (e.g. ECGTOOL_TORCH="torch --index-url https://download.pytorch.org/whl/cu124").
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${ECGTOOL_VENV:-$root/.venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv" >&2
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c "import torch" 2>/dev/null; then
  echo "installing ${ECGTOOL_TORCH:-torch==2.13.0}" >&2
  # shellcheck disable=SC2086  # the spec may carry pip options
  "$py" -m pip install -q --disable-pip-version-check ${ECGTOOL_TORCH:-torch==2.13.0}
fi
echo "installing ecgtool (editable) with test extras" >&2
"$py" -m pip install -q --disable-pip-version-check -e "$root[test]" 2>&1 | grep -v -e "^WARNING: Location" >&2 || true
"$py" -c "import ecgtool, torch; print(f'ecgtool {ecgtool.__version__}, torch {torch.__version__}')" >&2
