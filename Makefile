# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned: 2.13.0 is the CPU build this machine installs from disk; an unpinned
# torch would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: env test lint format demo bench clean

$(BIN)/nerf: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[test,sfm,export,viewer]"
	touch $(BIN)/nerf

env: $(BIN)/nerf

lint: env
	$(BIN)/ruff check nerfcli tests bench
	$(BIN)/ruff format --check nerfcli tests bench
	$(BIN)/lint-imports

format: env
	$(BIN)/ruff check --fix nerfcli tests bench
	$(BIN)/ruff format nerfcli tests bench

test: env lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

demo: env
	$(BIN)/nerf demo --out runs/demo

bench: env
	$(BIN)/python bench/fern.py --minutes 10

clean:
	rm -rf runs .pytest_cache
