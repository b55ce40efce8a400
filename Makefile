# onbeat: two commands do all the set-up on a fresh Debian machine (run as root for apt).
#   make demo   create the venv, install, and run the live analyzer (built-in demo without a mic)
#   make test   install test needs (apt packages included), lint, type-check and run the tests
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.onbeat-installed

.PHONY: demo test install system-deps lint typecheck pytest bench clean

demo: install
	$(VENV)/bin/onbeat live

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU build of torch from the local wheel; never a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m onbeat.realtime.warmup
	touch $(STAMP)

system-deps:
	bash .ci/install_system.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy realtime models

pytest: install
	$(VENV)/bin/python -m pytest -q

test: system-deps install lint typecheck pytest

bench: install
	$(VENV)/bin/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
