#!/usr/bin/env bash
# One command for a GPU session (planned to finish in about 8 minutes; installs nothing):
#
#   bash benchmarks/gpu_check.sh            # results in $OUT if set, else benchmarks/results/
#
# 1. the card, driver and versions (nvidia-smi, torch) -> gpu_env.txt
# 2. the CUDA-only tests (real card: auto precision, fp16 scaler + fused AdamW, no host-device
#    sync per training step, nvjpeg against PIL) -> gpu_tests.txt
# 3. benchmarks/bench_dogs_cats.py on 25,000 generated 375 x 375-500 JPEGs, ResNet-34 (random
#    init) at 224, batch 64, fine_tune(1): decode on the CPU (PIL) and on the GPU (nvjpeg),
#    data loading, frozen and unfrozen images/s with data wait and compute, predictions, precompute,
#    the sync audit, variants (channels_last off, --compile, fp16 as on a T4, cudnn.benchmark) and
#    fastai on the same card when a fastai venv is there (.venv-fastai, /work/venv-fastai or
#    $FASTAI_PYTHON; see benchmarks/README.md) -> dogs_cats-cuda-<time>.md/.json, gpu_bench.log
# Time limits keep it within the plan: variants not started after KT_BUDGET s of the kaggletools
# worker are skipped, and each worker stops after its limit, keeping what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST="${OUT:-benchmarks/results}"
PY="${PYTHON:-.venv/bin/python}"
N="${N:-25000}"
KT_BUDGET="${KT_BUDGET:-150}"
WORKER_TIMEOUT="${WORKER_TIMEOUT:-240}"
mkdir -p "$DEST"
start=$(date +%s)

{
  echo "# $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi || echo "nvidia-smi: not available"
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,power.limit,clocks.max.sm --format=csv || true
  "$PY" - <<'PY'
import torch, torchvision
from kaggletools.model import device
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
      f"torchvision {torchvision.__version__}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        d = torch.device("cuda", i)
        print(f"cuda:{i} {torch.cuda.get_device_name(d)}, capability {torch.cuda.get_device_capability(d)}, "
              f"--amp auto -> {device.choose_precision(d)}, optimizer {device.optimizer_options(d)}")
else:
    print("no CUDA device visible to torch")
PY
} 2>&1 | tee "$DEST/gpu_env.txt"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device; nothing measured" | tee -a "$DEST/gpu_env.txt"
  exit 1
fi

# the CUDA-only tests (they skip on machines without a GPU)
timeout 120 "$PY" -m pytest -q -rs -k cuda tests/test_precision.py tests/test_speed.py -p no:cacheprovider \
  2>&1 | tee "$DEST/gpu_tests.txt"
tests_rc=${PIPESTATUS[0]}

timeout 540 "$PY" benchmarks/bench_dogs_cats.py --device cuda --synthetic "$N" --backbone resnet34 --no-pretrained \
  --size 224 --batch-size 64 --freeze-epochs 1 --epochs 1 --variants no-channels-last,compile,fp16,cudnn-benchmark \
  --sync-audit --budget "$KT_BUDGET" --worker-timeout "$WORKER_TIMEOUT" --fastai-if-available \
  --work "${TMPDIR:-/tmp}/kt-gpu-check" --out "$DEST" 2>&1 | tee "$DEST/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}

echo "gpu_check: tests rc=$tests_rc, bench rc=$bench_rc, $(( $(date +%s) - start )) s; results in $DEST" \
  | tee -a "$DEST/gpu_env.txt"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
