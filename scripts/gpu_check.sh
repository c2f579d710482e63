#!/usr/bin/env bash
# GPU checks on a lent CUDA machine (torch, accelerate and peft preinstalled there; transformers, trl, datasets,
# pyarrow, dill, multiprocess, fsspec, regex, xxhash and liger-kernel carried as wheels in .whl/).
# Usage there: RAPREF_COMMIT=<rapref's commit, from the machine the tree was copied from> bash scripts/gpu_check.sh
# Writes into $OUT: gpu-dpo.json (the benchmark: docs/performance.md's GPU table, python scripts/gpu_report.py) with
# gpu-dpo-logs/ (one log per configuration's own process), gpu-tests.log, gpu-packing.json, check.log.
# Under 8 minutes on an H200, installs included: every step has its own limit (install 40 s, versions 20 s, benchmark
# 280 s budget + 20 s, tests 60 s, packing check 45 s: 465 s at most) and a step that runs out leaves the next ones
# their time. The benchmark stops starting configurations when its budget is spent and records the rest as not started.
# The overlay path must contain "site-packages": otherwise dill (through datasets fingerprinting) pickles whole
# modules by value and fails on pyarrow types (unslothai/unsloth#9791 describes the mechanism).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1
SECONDS=0
timeout 40 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/overlay/site-packages .whl/*.whl || exit 1
export PYTHONPATH=/tmp/overlay/site-packages:$PWD/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export RAPREF_COMMIT=${RAPREF_COMMIT:-unknown}
echo "install: ${SECONDS}s"
nvidia-smi -L
timeout 20 python3 - <<'EOF'
import importlib.metadata as m

import datasets, torch, transformers, trl

liger = next((d.version for d in m.distributions() if d.metadata["Name"] == "liger-kernel"), None)
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "| transformers", transformers.__version__,
      "| trl", trl.__version__, "| datasets", datasets.__version__, "| liger-kernel", liger)
EOF
# TRL's defaults, TRL by hand, rapref's CUDA defaults, one process each: speed, memory, log-probs, losses, gradients,
# and Liger's first loss with and without the reference on the policy's kernels
timeout ${BENCH_TIMEOUT:-300} python3 benchmarks/gpu_dpo_bench.py --budget ${BENCH_BUDGET:-280} \
  --out "$OUT/gpu-dpo.json" 2>&1 | grep -v -e "warnings.warn" -e "Warning:" -e "examples/s\]"
echo "benchmark: ${SECONDS}s"
timeout 60 python3 -m pytest -q -p no:cacheprovider -m gpu tests/train/test_gpu.py 2>&1 | tee "$OUT/gpu-tests.log" | tail -15
echo "gpu tests: ${SECONDS}s"
# packed DPO vs TRL's padded path: log-probs, gradients, speed, memory
timeout 45 python3 benchmarks/gpu_packing_check.py --out "$OUT/gpu-packing.json" 2>&1 | grep '^{'
echo "all: ${SECONDS}s"
