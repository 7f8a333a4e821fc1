# Parley: one Makefile for people, CI and hooks. `make help` lists the verbs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install lint test test-unit services-up services-down schemas bench demo

help:
	@echo "make demo           install, train the example bot, run everything on http://localhost:5005"
	@echo "make test           install, start the real services, run the whole suite, stop them"
	@echo "make install        system packages, Kafka jars, the virtualenv with dev extras"
	@echo "make lint           ruff + mypy"
	@echo "make test-unit      the fast in-memory tests only (no services)"
	@echo "make services-up    start Kafka, Redis, PostgreSQL, Triton on loopback (reuses running ones)"
	@echo "make services-down  stop what services-up started"
	@echo "make schemas        regenerate schemas/generated (JSON Schema, AsyncAPI)"
	@echo "make bench          run the benchmarks against the real services"

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# uv (from PyPI) installs from its cache in seconds; pip takes ~20 s here.
	$(PY) -m pip install --quiet "uv>=0.5"
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e ".[dev,train]"
	scripts/install-system.sh
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check schemas services tests benchmarks examples
	$(VENV)/bin/ruff format --check schemas services tests benchmarks examples
	$(VENV)/bin/mypy

test: install
	scripts/test.sh

test-unit: install
	$(PY) -m pytest -m "not integration" -q

services-up: install
	scripts/services.sh up

services-down:
	scripts/services.sh down

schemas: install
	$(PY) -m schemas.generate
	$(PY) -m services.gateway.app

bench: install
	scripts/services.sh up kafka
	eval "$$(scripts/services.sh env)" && $(PY) -m benchmarks.bus --out results/bench-bus.json

DEMO_PROJECT ?= examples/bikeshop
DEMO_PORT ?= 5005

# Train Parley's example bot (a progress bar on a terminal; "not retrained" when nothing
# changed) and run every service in one process on http://localhost:$(DEMO_PORT).
demo: install
	$(VENV)/bin/parley train --project $(DEMO_PROJECT)
	$(VENV)/bin/parley run --project $(DEMO_PROJECT) --port $(DEMO_PORT)
