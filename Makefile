# picocloud: `make up` starts the all-in-one cloud, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: up test test-fast lint deps clean

$(STAMP): pyproject.toml
	./scripts/ensure-debs.sh
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

deps: $(STAMP)

up: $(STAMP)
	$(VENV)/bin/picocloud up $(ARGS)

test: $(STAMP)
	./scripts/ensure-debs.sh
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit tests/api tests/e2e $(ARGS)

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit tests/api $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info
