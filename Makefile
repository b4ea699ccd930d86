# Every target makes .venv if it is missing and installs into it: nothing needs to be installed first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Installs come from the locks only, every file checked against its hash; pip itself and the
# build backend are in them too. `make lock` regenerates them (see README).
LOCK      := requirements.lock
DEV_LOCK  := requirements-dev.lock
LOCK_VENV := .venv-lock
UV_VERSION := 0.13.9
UV_COMPILE := $(LOCK_VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock'

.PHONY: demo test lint typecheck pytest fuzz bench lock clean

# A lock change makes a new .venv, so nothing the lock no longer names stays behind. The runtime
# lock goes first: it brings the locked pip and setuptools, which then build, without fetching
# anything unlocked, the few dev packages published only as source.
$(STAMP): pyproject.toml $(LOCK) $(DEV_LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --require-hashes --no-build-isolation -r $(DEV_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
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

# The property-based fuzz tests with many more examples than `make test` gives them (5,000 per
# test by default; HYPOTHESIS_PROFILE picks another profile of tests/conftest.py).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-fuzz} $(BIN)/pytest -m fuzz --timeout=0

bench: $(STAMP)
	$(BIN)/python bench/manifest_load.py
	$(BIN)/python bench/run_overhead.py
	$(BIN)/python bench/run_memory.py
	$(BIN)/python bench/run_rss.py
	$(BIN)/python bench/rate_limit.py
	$(BIN)/python bench/adaptive_rate.py
	$(BIN)/python bench/hostile.py
	$(BIN)/python bench/apply_lag.py
	$(BIN)/python bench/upload_memory.py

# Regenerate both locks from pyproject.toml and requirements-install.in, keeping every pin that
# still fits; `make lock LOCK_ARGS=--upgrade` moves everything to the newest allowed versions.
lock:
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION)
	$(UV_COMPILE) $(LOCK_ARGS) pyproject.toml requirements-install.in -o $(LOCK)
	$(UV_COMPILE) $(LOCK_ARGS) pyproject.toml requirements-install.in --extra dev -c $(LOCK) \
		-o $(DEV_LOCK)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .runner .mypy_cache .pytest_cache .ruff_cache .hypothesis
