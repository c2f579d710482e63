#!/usr/bin/env bash
# GPU checks on a lent CUDA machine (torch, accelerate and peft preinstalled there; transformers, trl, datasets,
# pyarrow, dill, multiprocess, fsspec, regex, xxhash and liger-kernel carried as wheels in .whl/).
# Usage there: RAPREF_COMMIT=<rapref's commit, from the machine the tree was copied from> bash scripts/gpu_check.sh
# Writes into $OUT: gpu-dpo.json (the benchmark: docs/performance.md's GPU table, python scripts/gpu_report.py),
# gpu-packing.json, check.log, gpu-tests.log. Sized for under 8 minutes on an H200, installs included.
# The overlay path must contain "site-packages": otherwise dill (through datasets fingerprinting) pickles whole
# modules by value and fails on pyarrow types (unslothai/unsloth#9791 describes the mechanism).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/overlay/site-packages .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/overlay/site-packages:$PWD/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export RAPREF_COMMIT=${RAPREF_COMMIT:-unknown}
nvidia-smi -L
python3 -c "import torch, transformers, trl, datasets, pyarrow; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', '| transformers', transformers.__version__, '| trl', trl.__version__, '| datasets', datasets.__version__)"
SECONDS=0
# TRL's defaults, TRL by hand, rapref's CUDA defaults: speed, memory, log-probs, losses, gradients
timeout ${BENCH_TIMEOUT:-330} python3 benchmarks/gpu_dpo_bench.py --out "$OUT/gpu-dpo.json" 2>&1 \
  | grep -v -e "warnings.warn" -e "Warning:" -e "examples/s\]"
echo "benchmark: ${SECONDS}s"
# packed DPO vs TRL's padded path: log-probs, gradients, speed, memory
timeout 60 python3 benchmarks/gpu_packing_check.py --out "$OUT/gpu-packing.json" 2>&1 | grep '^{'
echo "packing check: ${SECONDS}s"
timeout 70 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu-tests.log" | tail -15
echo "all: ${SECONDS}s"
