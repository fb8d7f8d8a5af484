# genai-fleet entry points. `make demo` and `make test` set up everything they need themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STACK ?= dev
FLAVOR ?= cuda
PYTEST_ARGS ?=

.PHONY: install test lint unit preview local demo bench ami docs help

help:
	@echo "make demo | test | install | preview STACK=dev|prod | local | bench | ami FLAVOR=cuda|neuron | docs"

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt runtime-requirements.txt policies/requirements.txt pyproject.toml
	tools/install_system_deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) tools/lambda_native_deps.py
	touch $@

lint: install
	$(PY) -m ruff check .
	$(PY) tools/config_docs.py --check

test: install lint
	$(PY) -m pytest $(PYTEST_ARGS)

docs: install
	$(PY) tools/config_docs.py

preview: install
	$(PY) tools/preview.py --stack $(STACK)

local: install
	$(PY) -m runtime.local $(LOCAL_ARGS)

demo: install
	$(PY) tools/demo.py $(DEMO_ARGS)

bench: install
	$(PY) tools/bench.py $(BENCH_ARGS)

ami: install
	$(PY) tools/ami_build.py --flavor $(FLAVOR) $(if $(REGION),--region $(REGION)) $(AMI_ARGS)
