# KeyLedger developer tasks. Needs only python3 (>= 3.11) and network access to PyPI.
#
#   make run     install (if needed) and run the service (embedded PostgreSQL by default)
#   make test    install dev tools and SoftHSM2 (if needed), then lint and every test tier
#   make system-packages  install the Debian packages the tests need (softhsm2, chromium), if missing
#   make test-fast  the in-memory tiers only (no PostgreSQL, no server, no lint): seconds
#   make bench   run the benchmark (tools/bench; ARGS=--suite for every figure)
#   make chaos   attack a real service: kill -9, outages, floods, fuzzing (ARGS=--short for CI)
#   make lint    ruff (lint and format), mypy and the import-linter layer contract
#   make clean   remove caches and build output (keeps .venv and the .keyledger data dir)
#
# Installs are redone only when pyproject.toml changes (stamp files in .venv).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --no-input -q
RUN_STAMP := $(VENV)/.keyledger-run.stamp
DEV_STAMP := $(VENV)/.keyledger-dev.stamp
PYTEST_ARGS ?=
# pytest-xdist processes for `make test` (0: none, all in one process). Two is what CI runs;
# each process holds its own services' connections to the shared PostgreSQL servers (100 each).
PYTEST_WORKERS ?= 2
ARGS ?=

.PHONY: help run test test-fast bench chaos lint clean distclean system-packages

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

# The virtualenv. Debian's python3 without python3-venv has no ensurepip: then build
# the venv without pip and install pip into it with the system pip.
$(BIN)/python:
	@echo "creating $(VENV) with $$($(PYTHON) --version)"
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "error: $(PYTHON) is older than 3.11 (set PYTHON=python3.11)" >&2; exit 1; }
	@if ! $(PYTHON) -m venv $(VENV) >/dev/null 2>&1; then \
		rm -rf $(VENV); \
		$(PYTHON) -m venv --without-pip $(VENV); \
		$(PYTHON) -m pip --disable-pip-version-check -q --python $(BIN)/python install pip; \
	fi

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	@echo "installing keyledger with dev tools into $(VENV)"
	@$(PIP) install -e '.[dev]'
	@touch $@ $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	@if [ ! $(DEV_STAMP) -nt pyproject.toml ]; then \
		echo "installing keyledger into $(VENV)"; \
		$(PIP) install -e .; \
	fi
	@touch $@

run: $(RUN_STAMP)
	exec $(BIN)/keyledger run $(ARGS)

bench: $(DEV_STAMP)
	exec $(BIN)/python -m tools.bench $(ARGS)

chaos: $(DEV_STAMP)
	$(BIN)/python -m tools.chaos $(ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# System packages the tests need: SoftHSM2, the PKCS#11 token of the HSM root-key tests, and
# chromium, the browser of the console's Playwright tests. Installed with apt-get when
# missing and this user may (root or sudo -n); otherwise the script says what to install
# (and fails under CI=true).
system-packages:
	@bash tools/install-system-packages.sh

# `python -m pytest` puts the repo root on sys.path, so `tests.support` imports work.
# pytest exit code 5 ("no tests collected") fails the target like any other failure.
# The suite runs in PYTEST_WORKERS processes (pytest-xdist): each has its own databases and
# services, and they share the embedded server (tests/support/databases.py).
test: lint system-packages
	@status=0; $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; \
	exit $$status

# The tests marked "memory" (docs/testing.md): tests/domain, tests/unit, tests/usecases and
# the in-memory half of tests/infrastructure. No external PostgreSQL is probed unless one is
# configured.
test-fast: $(DEV_STAMP)
	@status=0; KEYLEDGER_TEST_EXTERNAL_DATABASE_URL="$${KEYLEDGER_TEST_EXTERNAL_DATABASE_URL-}" \
		$(BIN)/python -m pytest -m memory $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; \
	exit $$status

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f $(RUN_STAMP) $(DEV_STAMP)

distclean: clean
	rm -rf $(VENV)
