#!/usr/bin/env bash
# The whole loop offline: generated Kaggle-shaped download -> prepare -> train (mobilenet_v2,
# ImageNet weights) -> predict with TTA -> validated submission -> local score.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/kaggletools demo "$@"
