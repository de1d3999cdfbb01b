# stochgrad — two commands on a fresh machine: `make bench` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

# torch: the CPU build where no NVIDIA GPU is visible (an unpinned torch pulls several GB of CUDA wheels);
# override with e.g. `make bench TORCH_REQ=torch==2.13.0 TORCH_PIP=`.
HAS_NVIDIA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_NVIDIA),1)
TORCH_REQ ?= torch
TORCH_PIP ?=
JAX_REQ ?= jax[cuda12]
else
TORCH_REQ ?= torch==2.13.0
TORCH_PIP ?= $(if $(wildcard /opt/wheels/torch-*cpu*.whl),,--extra-index-url https://download.pytorch.org/whl/cpu)
JAX_REQ ?= jax
endif

SUITE ?= suites/default.toml
RUN_ID ?= $(basename $(notdir $(SUITE)))-$(shell date +%Y%m%d-%H%M%S)
RUN_DIR ?= results/$(RUN_ID)
PYTEST_ARGS ?=

.PHONY: venv bench smoke test test-all lint format perf report clean asv asv-compare asv-publish docs docs-check bench-parallel

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIP) "$(TORCH_REQ)"
	$(BIN)/pip install -q "$(JAX_REQ)" "optax>=0.2"  # optax: the JAX training engine
	$(BIN)/pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

bench: venv  ## run suites/default.toml, write results/<run-id>/ and the HTML report
	$(BIN)/stochgrad run $(SUITE) --out $(RUN_DIR)
	$(BIN)/stochgrad report $(RUN_DIR) -o $(RUN_DIR)/report.html
	@echo "results: $(RUN_DIR)/results.parquet"
	@echo "report:  $(RUN_DIR)/report.html"

bench-parallel: venv  ## wall-clock in-process vs --workers 2 (docs/notes/scale-out.md); STRIDE=8 keeps every 8th cell
	$(PY) -m suites.benchmarks.scaleout wallclock $(SUITE) --stride $(or $(STRIDE),1)

smoke: venv
	$(BIN)/stochgrad run suites/smoke.toml --out results/smoke-$(shell date +%Y%m%d-%H%M%S)

test: venv  ## lint + import contracts + the test suite (what CI runs); slow batteries: make test-all
	$(BIN)/ruff check stochgrad harness estimators tests suites
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)
	$(MAKE) docs-check
	$(BIN)/pytest -q -p no:cacheprovider --nbmake docs/tutorial.ipynb

test-all: venv
	$(BIN)/ruff check stochgrad harness estimators tests suites
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n 2 $(PYTEST_ARGS)

lint: venv  ## ruff, ruff format and the import-linter contracts of pyproject.toml (docs/architecture.md)
	$(BIN)/ruff check stochgrad harness estimators tests suites
	$(BIN)/ruff format --check stochgrad harness estimators tests suites
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix stochgrad harness estimators tests suites
	$(BIN)/ruff format stochgrad harness estimators tests suites

perf: venv  ## timing validation and throughput tables (prints; nothing asserted)
	$(PY) -m suites.benchmarks.perf

report: venv  ## report of the newest run: make report RUN_DIR=results/<run-id>
	$(BIN)/stochgrad report $(RUN_DIR) -o $(RUN_DIR)/report.html

clean:
	rm -rf .pytest_cache .ruff_cache build *.egg-info

# --- docs (mkdocs-material + mkdocstrings + mkdocs-jupyter; mkdocs.yml, pages in docs/) ---------
docs: venv  ## build the documentation site into site/ (open site/index.html)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --site-dir site
	@echo "docs: site/index.html"

docs-check: venv  ## build the docs with warnings as errors (broken links, unrendered API docs); make test runs it
	@d=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir "$$d"; \
	rc=$$?; rm -rf "$$d"; exit $$rc
# --- end docs -----------------------------------------------------------------------------------

# --- asv (regression tracking) -----------------------------------------------------------------
# asv (airspeed velocity) in this venv (--python=same: nothing is built or installed); docs/notes/asv.md.
#   make asv                               benchmark the checkout; results under HEAD's hash in .asv/results
#   make asv-compare BASE=<rev> [HEAD=<rev>] [FACTOR=1.2] [BENCH=<regex>] [ROUNDS=2] [STRICT=1]
#   make asv-publish                       static dashboard in .asv/html; view: .venv/bin/asv preview
BASE ?=
HEAD ?= HEAD
FACTOR ?= 1.2
BENCH ?=
STRICT ?=
ROUNDS ?=
ASV_ARGS ?=
ASV_BENCH = $(if $(BENCH),--bench "$(BENCH)") $(if $(ROUNDS),--rounds $(ROUNDS))

asv: venv  ## benchmark the current checkout (results saved with HEAD's commit hash)
	$(PY) -m suites.benchmarks.asv_tools run $(ASV_BENCH) $(ASV_ARGS)

asv-compare: venv  ## benchmark BASE and HEAD, print `asv compare --factor $(FACTOR)`
	@test -n "$(BASE)" || { echo "usage: make asv-compare BASE=<rev> [HEAD=HEAD] [FACTOR=1.2] [BENCH=regex]"; exit 2; }
	$(PY) -m suites.benchmarks.asv_tools compare "$(BASE)" --head "$(HEAD)" --factor $(FACTOR) $(ASV_BENCH) $(if $(STRICT),--strict) $(ASV_ARGS)

asv-publish: venv  ## build the static dashboard from .asv/results into .asv/html
	$(PY) -m suites.benchmarks.asv_tools publish
# --- end asv ------------------------------------------------------------------------------------
