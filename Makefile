# Quickstart targets (see README):
#   make demo   set up, fetch models and the demo set, run the DVC pipeline, print the report
#   make test   set up with dev tools, run ruff, mypy and the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: setup demo test lint server clean-outputs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes. pip byte-compiles one file at a time
# (over half of the install here: 240 s against 100 s without); compileall does the same
# on every core (about 60 s on two). The .pyc files must exist: with PYTHONDONTWRITEBYTECODE
# set, as in many containers, every process would compile its imports anew. A file that
# does not compile (torch ships a Python 3.12-only test module) is skipped, as pip does.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile -e '.[dev]'
	$(BIN)/pip install --quiet --no-compile --no-deps deepface==0.0.103  # its deps: see pyproject.toml
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $@

setup: $(VENV)/.installed
	$(BIN)/exprbench fetch-models

demo: setup
	$(BIN)/exprbench fetch-demo --dest data/raw
	$(BIN)/exprbench server start
	$(BIN)/exprbench plots-template
	$(BIN)/dvc repro
	@echo "Report: file://$(CURDIR)/data/reports/index.html"
	@$(BIN)/exprbench server status | grep '^UI:'
	@echo "(stop the Prefect server with: $(BIN)/exprbench server stop)"

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -q --durations=25 -n 3 --dist loadfile

server: $(VENV)/.installed
	$(BIN)/exprbench server start
