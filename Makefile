# Every target makes .venv if it is missing and installs into it: nothing needs to be installed first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/runner demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check runner tests bench
	$(BIN)/ruff format --check runner tests bench
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/manifest_load.py
	$(BIN)/python bench/run_overhead.py
	$(BIN)/python bench/run_memory.py
	$(BIN)/python bench/rate_limit.py
	$(BIN)/python bench/adaptive_rate.py

clean:
	rm -rf $(VENV) .runner .mypy_cache .pytest_cache .ruff_cache
