# knee-tf: two commands on a fresh machine with python3 and make:
#   make study   set up .venv if missing, then run the whole study on the default synthetic data (into runs/ only);
#                notebook 07 reads the controls from the published grid, or trains them: make study CONTROLS=train
#   make test    set up .venv if missing, then run the test suite
#   make test-fast  the same without the slow integration tests (pytest -m "not slow": notebooks, studies,
#                grids, the tour, Orthanc, Chromium)
#   make tour    run the classroom tour (notebooks/00_tour, about two minutes) into runs/<timestamp>-tour/
#   make html    render the newest run's executed notebooks as static pages: runs/<run>/html/index.html
#                (or a given run: make html RUN=runs/<folder>)
#   make publish run (or resume) the study and copy it to figures/ and results/: make publish SEEDS=3,
#                or publish a finished run folder: make publish RUN=runs/<folder>
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= default
# test processes (pytest-xdist): tests sharing the smoke study or the small grid stay on one, files stay whole;
# the units of work in the order tests/conftest.py queues them (longest first), not by their number of tests
TEST_WORKERS ?= 2
PARALLEL := $(if $(filter 0 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)
SEEDS  ?= 1
# notebook 07's controls: read from the published grid (the default config's), or CONTROLS=train
CONTROLS ?=
CONTROLS_SET := $(if $(filter train,$(CONTROLS)),--set controls_source=run,$(if $(CONTROLS),--set controls_source=$(CONTROLS),))

.PHONY: setup study publish smoke tour html test test-fast lint bench clean-runs

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

study: $(STAMP)
	$(VENV)/bin/knee-tf study --config $(CONFIG) --seeds $(SEEDS) $(CONTROLS_SET)

publish: $(STAMP)
	$(VENV)/bin/knee-tf study $(if $(RUN),--run $(RUN),--config $(CONFIG) --seeds $(SEEDS)) --publish

smoke: $(STAMP)
	$(VENV)/bin/knee-tf study --config smoke

tour: $(STAMP)
	$(VENV)/bin/knee-tf tour

html: $(STAMP)
	$(VENV)/bin/knee-tf html $(if $(RUN),--run $(RUN),)

test: $(STAMP)
	$(PY) -m pytest -q $(PARALLEL) tests

test-fast: $(STAMP)
	$(PY) -m pytest -q $(PARALLEL) -m "not slow" tests

lint: $(STAMP)
	$(VENV)/bin/ruff check knee_tf tests bench

bench: $(STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/cam.py
