# knee-tf: two commands on a fresh machine with python3 and make:
#   make study   set up .venv if missing, then run the whole study on the default synthetic data
#   make test    set up .venv if missing, then run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= default
SEEDS  ?= 1

.PHONY: setup study smoke test lint bench clean-runs

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

study: $(STAMP)
	$(VENV)/bin/knee-tf study --config $(CONFIG) --seeds $(SEEDS)

smoke: $(STAMP)
	$(VENV)/bin/knee-tf study --config smoke

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check knee_tf tests bench

bench: $(STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/cam.py
