# conn's two commands: `make demo` and `make test`. Everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PLUGINS := $(sort $(wildcard plugins/sources/*/pyproject.toml plugins/destinations/*/pyproject.toml \
				  plugins/databases/*/pyproject.toml plugins/matchers/*/pyproject.toml))
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(PLUGINS))
DEMO_DIR ?= demo
# Absolute, so that DEMO_DIR may be any folder.
CONN = $(abspath $(VENV))/bin/conn

.PHONY: dev demo test test-fast lint bench bench-quick dist api-docs clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv

# One environment with the core and every first-party plugin (editable), plus the
# planner's compiled kernels when a C compiler is there (conn works without them).
dev: $(UV)
	$(UV) pip install --quiet --python $(PY) -e ".[test,postgres]" $(foreach d,$(PLUGIN_DIRS),-e "$(d)[test]")
	@$(UV) pip install --quiet --python $(PY) -e "speedups[test]" 2>/dev/null \
	  || echo "note: conn-speedups not built (no C compiler?); the planner uses its numpy path"

demo: dev
	$(VENV)/bin/conn init --demo $(DEMO_DIR) --force
	cd $(DEMO_DIR) && $(CONN) sync warehouse crm
	cd $(DEMO_DIR) && $(CONN) profiles build
	cd $(DEMO_DIR) && $(CONN) sync profiles cdp
	cd $(DEMO_DIR) && $(CONN) runs
	cd $(DEMO_DIR) && $(CONN) experiments report customers_to_crm --outcome renewals

test: dev
	bash scripts/test-all.sh
	bash scripts/test-template.sh

test-fast: dev
	CONN_TEST_FAST=1 bash scripts/test-all.sh

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Wheels of the core and of every first-party plugin in dist/: install conn and plugins
# where there is no checkout (pip install dist/conn-*.whl dist/conn_destination_files-*.whl),
# or point a plugin built from the template at one (conn_source: /path/to/dist/conn-...whl).
dist: $(UV)
	rm -rf dist
	$(UV) build --quiet --wheel --out-dir dist .
	@for d in $(PLUGIN_DIRS); do $(UV) build --quiet --wheel --out-dir dist "$$d" || exit 1; done
	@ls dist

# The API reference (docs/api/*.md) rendered from the docstrings; CI checks it is current.
api-docs: dev
	$(PY) scripts/api_docs.py

bench: dev
	$(PY) -m bench

bench-quick: dev
	$(PY) -m bench --quick --smoke

clean:
	rm -rf $(VENV) .venvs $(DEMO_DIR) dist
