# genai-fleet entry points. `make demo` and `make test` set up everything they need themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Console scripts of pyproject.toml's [project.scripts], installed by `make install`.
BIN := $(VENV)/bin
STACK ?= dev
FLAVOR ?= cuda
CHANNEL ?= prod
PYTEST_ARGS ?=
PULUMI ?= pulumi
POLICY_CONFIG = .build/policy-config.$(STACK).json
LAMBDA_STAMPS = .build/lambda/api/.complete .build/lambda/kafka-layer/.complete
TRACE ?=
RATE ?= 100
WORKLOAD ?= sd15
SCALEOUT = $(if $(wildcard planner/scaleout-$(STACK).json),--scaleout planner/scaleout-$(STACK).json)

.PHONY: install test lint unit integration e2e static-check preview local demo bench ami docs help lambda-deps \
	policy-config preview-aws up promote-ami webhook-secret api-key chaos fuzz mutants plan plan-size plan-sweep measure-scaleout \
	cost rotate-signing-key

# Every test directory belongs to exactly one suite (tests/unit/test_make_targets.py checks it).
UNIT_TESTS := tests/unit
INTEGRATION_TESTS := tests/integration tests/contract
E2E_TESTS := tests/e2e tests/rehearsal
# Unit tests are independent and CPU-bound: pytest-xdist runs them on two processes (UNIT_PARALLEL= for one).
UNIT_PARALLEL ?= -n 2

help:
	@echo "make demo | test | install | preview STACK=dev|prod | local | bench | chaos | fuzz | mutants | ami FLAVOR=cuda|neuron | docs"
	@echo "make test = static-check + unit + integration + e2e (each also on its own; PYTEST_ARGS=... passes through)"
	@echo "deploy (README 'Deploying to AWS'): ami | promote-ami | webhook-secret | api-key | preview-aws | up"
	@echo "make plan STACK=dev|prod [TRACE=diurnal:peak=100,trough=20] WORKLOAD=sd15|sdxl|mix|FILE [PLAN_ARGS=...]"
	@echo "make plan-size STACK=prod RATE=100 WORKLOAD=sd15 [PLAN_ARGS='--p95-wait 10']"
	@echo "make plan-sweep STACK=prod TRACE=... WORKLOAD=... PLAN_ARGS='--p95-wait 10 --targets 1,2,4'"
	@echo "make measure-scaleout STACK=prod [MEASURE_ARGS='--runs 3']   (AWS credentials)"

install: $(VENV)/.installed $(LAMBDA_STAMPS)

$(VENV)/.installed: requirements.txt requirements-dev.txt runtime-requirements.txt policies/requirements.txt pyproject.toml
	tools/install_system_deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# The job API's Lambda dependencies, built for arm64 / python3.12 from pinned requirements (no pip at deploy).
lambda-deps $(LAMBDA_STAMPS): $(VENV)/.installed runtime/api/lambda-requirements.txt runtime/api/kafka-layer-requirements.txt
	$(PY) tools/build_lambda.py

# ruff, config docs, packer fmt/validate, shellcheck (tools/static_check.sh).
static-check: install
	PY=$(PY) tools/static_check.sh

lint: static-check

# pytest exits 5 when it collects no test, so an empty suite fails too.
unit: install
	$(PY) -m pytest $(UNIT_TESTS) $(UNIT_PARALLEL) $(PYTEST_ARGS)

integration: install
	$(PY) -m pytest $(INTEGRATION_TESTS) $(PYTEST_ARGS)

e2e: install
	$(PY) -m pytest $(E2E_TESTS) $(PYTEST_ARGS)

# Every part runs even when an earlier one fails; the target fails if any did.
test: install
	@failed=""; for part in static-check unit integration e2e; do \
		$(MAKE) --no-print-directory $$part PYTEST_ARGS='$(PYTEST_ARGS)' || failed="$$failed $$part"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed" >&2; exit 1; fi

docs: install
	$(BIN)/genai-config-docs

preview: install
	$(BIN)/genai-preview --stack $(STACK)

local: install
	$(BIN)/genai-local $(LOCAL_ARGS)

demo: install
	$(BIN)/genai-demo $(DEMO_ARGS)

chaos: install
	$(BIN)/genai-chaos $(CHAOS_ARGS)

# Planted one-line bugs in the invariant code, each against its tests (tools/mutant_catalogue.py); not in CI.
mutants: install
	$(PY) -m tools.mutants $(MUTANTS_ARGS)

bench: install
	$(BIN)/genai-bench $(BENCH_ARGS)

# The job API's long fuzzing campaign (schemathesis, positive and negative data, per operation and stateful):
# at least 10,000 requests, report in bench/results/fuzz-latest.{md,json}; fails on any 5xx. FUZZ_ARGS=--minutes N
fuzz: install
	$(PY) -m bench.fuzz_api $(FUZZ_ARGS)

ami: install
	$(BIN)/genai-ami --flavor $(FLAVOR) $(if $(REGION),--region $(REGION)) $(AMI_ARGS)

# --- deploy (README "Deploying to AWS"); the pulumi commands get the stack's policy config every time ---
policy-config: install policies/venv/.installed
	$(BIN)/genai-preview --stack $(STACK) --emit-policy-config $(POLICY_CONFIG)

# The policy pack's own virtualenv (policies/PulumiPolicy.yaml: virtualenv venv).
policies/venv/.installed: policies/requirements.txt
	test -x policies/venv/bin/python || python3 -m venv policies/venv
	policies/venv/bin/python -m pip install -q -r policies/requirements.txt
	touch $@

preview-aws: policy-config
	$(PULUMI) preview --stack $(STACK) --policy-pack policies --policy-pack-config $(POLICY_CONFIG) $(PULUMI_ARGS)

up: policy-config
	$(PULUMI) up --stack $(STACK) --policy-pack policies --policy-pack-config $(POLICY_CONFIG) $(PULUMI_ARGS)

promote-ami: install
	$(BIN)/genai-stack promote-ami --flavor $(FLAVOR) --channel $(CHANNEL) $(if $(AMI),--ami $(AMI)) \
		$(if $(ROLLBACK),--rollback) $(if $(REGION),--region $(REGION))

webhook-secret: install
	$(BIN)/genai-stack webhook-secret --stack $(STACK)

api-key: install
	$(BIN)/genai-stack api-key --stack $(STACK) --name "$(NAME)" $(if $(QUOTA),--quota-per-day $(QUOTA))

# (AWS credentials, issue 43) the next step of creating or rotating the output URL signing key; make up after each.
rotate-signing-key: install
	$(BIN)/genai-stack rotate-signing-key --stack $(STACK)

# (AWS credentials) cost per 1,000 images per model and task, idle and boot share (tools/cost_report.py).
SINCE ?= 7d
cost: install
	$(BIN)/genai-stack cost --stack $(STACK) --since $(SINCE)

# Capacity planner (docs/planner.md): simulate the stack's fleet against a trace; PNG in plan-<stack>.png.
plan: install
	$(BIN)/genai-plan run --stack $(STACK) --trace '$(TRACE)' --workload '$(WORKLOAD)' --plot plan-$(STACK).png \
		$(SCALEOUT) $(PLAN_ARGS)

plan-size: install
	$(BIN)/genai-plan size --stack $(STACK) --rate $(RATE) --workload '$(WORKLOAD)' $(SCALEOUT) $(PLAN_ARGS)

plan-sweep: install
	$(BIN)/genai-plan sweep --stack $(STACK) --trace '$(TRACE)' --workload '$(WORKLOAD)' $(SCALEOUT) $(PLAN_ARGS)

# Real account (AWS credentials): one scale-out of the spot group measured, undone, appended to the file above.
measure-scaleout: install
	$(BIN)/genai-measure-scaleout --stack $(STACK) $(MEASURE_ARGS)
