#!/usr/bin/env bash
# GPU checks on a lent CUDA machine (torch and transformers preinstalled there; trl, datasets and pyarrow carried
# as wheels in .whl/). Usage there: bash scripts/gpu_check.sh
# The overlay path must contain "site-packages": otherwise dill (through datasets fingerprinting) pickles whole
# modules by value and fails on pyarrow types (unslothai/unsloth#9791 describes the mechanism).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/overlay/site-packages .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/overlay/site-packages:$PWD/src HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi -L
python3 -c "import torch, transformers, trl, datasets, pyarrow; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', '| transformers', transformers.__version__, '| trl', trl.__version__, '| datasets', datasets.__version__)"
# packed DPO vs TRL's padded path on the device: log-probs, one optimizer step, speed, memory (writes the JSON the
# README's GPU table is generated from: python scripts/gpu_report.py $OUT/gpu-packing.json)
timeout 420 python3 benchmarks/gpu_packing_check.py --out ${OUT:-/tmp}/gpu-packing.json 2>&1 | tail -8
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee ${OUT:-/tmp}/gpu_tests.log | tail -15
python3 -m pytest -q -p no:cacheprovider -x tests/test_train.py tests/test_losses.py -k "not recipe and not accelerate" 2>&1 | tail -5
