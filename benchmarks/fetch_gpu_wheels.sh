#!/usr/bin/env bash
# Download, into .whl/ at the repository root, the wheels that benchmarks/gpu.sh needs on a GPU machine that
# has Python 3.12 with torch, numpy, scipy, pandas, scikit-learn, click, rich and matplotlib but no network:
# the rest of ecgtool's dependencies for fetch synthetic, prep, split, train and eval (zarr and what it
# needs, wfdb and soundfile, thop, iterative-stratification), the versions ecgtool is tested with.
# explain (captum) and the dataset readers that need openpyxl are not benchmarked there and are left out.
#
#   benchmarks/fetch_gpu_wheels.sh [PYTHON_VERSION]     # default 3.12; run where pip reaches PyPI
#
# .whl/ is ignored by git (.gitignore); gpu.sh installs what it finds there with
# pip install --no-index --no-deps --target, so each needed package is named here, dependencies included.
set -euo pipefail
cd "$(dirname "$0")/.."
PYV="${1:-3.12}"
WHEELS=(
    zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0  # the store
    wfdb==4.3.1 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12                # fetch synthetic writes WFDB; prep reads it
    thop==0.1.1.post2209072238                                               # MACs (checkpoint profile fields)
    iterative-stratification==0.1.9                                         # split
)
mkdir -p .whl
PIP=(python3 -m pip)
"${PIP[@]}" --version >/dev/null 2>&1 || PIP=(pip)
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
"${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -d .whl "${WHEELS[@]}"
# one version of each package: two would stop the whole install
dups=$(ls .whl/*.whl | xargs -n1 basename | cut -d- -f1 | tr 'A-Z_' 'a-z-' | sort | uniq -d)
[ -z "$dups" ] || { echo "several versions in .whl of: $dups; empty .whl and rerun" >&2; exit 1; }
du -sh .whl
ls .whl
