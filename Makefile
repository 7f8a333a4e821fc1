# Parley: one Makefile for people, CI and hooks. `make help` lists the verbs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install lint test test-unit services-up services-down schemas bench demo k8s-lint k8s-render

help:
	@echo "make demo           install, train the example bot, run everything on http://localhost:5005"
	@echo "make test           install, start the real services, run the whole suite, stop them"
	@echo "make install        system packages, Kafka jars, the virtualenv with dev extras"
	@echo "make lint           ruff + mypy + k8s-lint"
	@echo "make k8s-lint       render deploy/k8s overlays, lint them with checkov (deploy/k8s/checkov.yaml)"
	@echo "make k8s-render     print one overlay's manifests: make k8s-render OVERLAY=prod"
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
	$(MAKE) k8s-lint

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

# deploy/k8s: schemas are checked by tests/deploy (make test); checkov lints the rendered
# overlays here. checkov has its own virtualenv: it pins packaging<24, which pytest 9 refuses.
CHECKOV_VENV := $(VENV)/checkov
K8S_OVERLAYS := dev prod
K8S_RENDERED := $(VENV)/k8s-rendered
OVERLAY ?= prod

$(CHECKOV_VENV)/bin/checkov: | $(STAMP)
	$(VENV)/bin/uv venv --quiet --allow-existing --python $(PY) $(CHECKOV_VENV)
	$(VENV)/bin/uv pip install --quiet --python $(CHECKOV_VENV)/bin/python "checkov==3.3.30"

k8s-lint: install $(CHECKOV_VENV)/bin/checkov
	$(VENV)/bin/ruff check deploy
	$(VENV)/bin/ruff format --check deploy
	rm -rf $(K8S_RENDERED) && mkdir -p $(K8S_RENDERED)
	for overlay in $(K8S_OVERLAYS); do \
		$(PY) -m tests.support.kustomize deploy/k8s/overlays/$$overlay > $(K8S_RENDERED)/$$overlay.yaml || exit 1; \
	done
	cp deploy/k8s/jobs/*.yaml $(K8S_RENDERED)/
	$(CHECKOV_VENV)/bin/checkov --config-file deploy/k8s/checkov.yaml -d $(K8S_RENDERED)

k8s-render: install
	@$(PY) -m tests.support.kustomize deploy/k8s/overlays/$(OVERLAY)

DEMO_PROJECT ?= examples/bikeshop
DEMO_PORT ?= 5005

# Train Parley's example bot (a progress bar on a terminal; "not retrained" when nothing
# changed) and run every service in one process on http://localhost:$(DEMO_PORT).
demo: install
	$(VENV)/bin/parley train --project $(DEMO_PROJECT)
	$(VENV)/bin/parley run --project $(DEMO_PROJECT) --port $(DEMO_PORT)
