# Two commands a user needs: `make demo` and `make test`. Both create .venv when missing and
# install the CPU stack in the one order that works (see docs/install.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rlkit-installed
export TORCH_EXTENSIONS_DIR := $(CURDIR)/$(VENV)/torch_extensions
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := disabled
export TOKENIZERS_PARALLELISM := false
export VLLM_CPU_KVCACHE_SPACE ?= 1
export HF_HUB_OFFLINE := 1

.PHONY: install demo test test-recipes test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml launch/install_cpu.sh
	PY=$(PY) bash launch/install_cpu.sh $(VENV)
	touch $(STAMP)

demo: install
	$(BIN)/rlkit train recipes/quickstart.yaml

test: install
	$(BIN)/python -m pytest -q -m "not gpu and not recipe" tests

test-recipes: install  # shipped recipes end to end, minutes each (docs/agents.md)
	$(BIN)/python -m pytest -q -m recipe tests

test-fast: install
	$(BIN)/python -m pytest -q -m "not gpu and not slow and not recipe" tests

lint: install
	$(BIN)/ruff check rlkit rewards rollouts launch tests benchmarks
	$(BIN)/ruff format --check rlkit rewards rollouts launch tests benchmarks

bench: install
	$(BIN)/python benchmarks/async_vs_sync.py

clean:
	rm -rf runs .pytest_cache
