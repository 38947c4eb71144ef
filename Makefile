# deploykit's two commands: `make demo` (set up + run the demo) and `make test` (set up + run the tests).
# Set-up is idempotent: a second run only redoes what changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test zoo demo chromium web clean

setup: $(VENV)/.installed web chromium

# pip installs uv (pinned in constraints.txt), and uv the project with the same pins: the same packages as
# `pip install -c constraints.txt -e ".[all]"`, compiled to bytecode as pip does, in 20 s instead of a minute.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -c constraints.txt -e ".[all]"
	touch $@

# The static page: TFJS pinned by web/package-lock.json, bundled with esbuild into web/dist.
web:
	@if [ -f web/build.mjs ]; then \
	  npm --prefix web ci --no-audit --no-fund --loglevel=error && npm --prefix web run --silent build; \
	fi

# Debian's chromium for the browser tests (Playwright cannot download its own browser here), and its headless-only
# build, which verify and the tests drive (convert.parity.browser.find_chromium: the same Chromium, less CPU per page).
chromium:
	@{ command -v chromium && command -v chromium-headless-shell; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-headless-shell; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-headless-shell; fi; }

# The suite on two workers more than there are cores (pytest-xdist; TEST_WORKERS=0 runs it in this process): about a
# third of a worker's time is spent waiting on a browser, a server or a subprocess, which the extra workers fill
# (2 cores, warm caches, one sitting: 237 s with 4 workers, 250 s with 3, 240 s with 5). --dist loadgroup keeps each
# module, and each zoo model with its page, on one worker. Models and bundles are cached by the sha256 of their
# sources (tests/conftest.py, tests/zoo/conftest.py), so a second run of the same sources skips TensorFlow's builds.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)) + 2)')
# DEPLOYKIT_TEST_WEB_BUILT: setup's web step built web/dist. Bytecode is written (__pycache__, ignored by git) even
# where the shell sets PYTHONDONTWRITEBYTECODE: the suite starts hundreds of Python processes (CLIs, servers,
# runtimes), and pytest rewrites its plugins' and the tests' modules in every one that has no cached copy.
test: setup
	@if [ -f web/package.json ]; then npm --prefix web test --silent; fi
	env -u PYTHONDONTWRITEBYTECODE DEPLOYKIT_TEST_WEB_BUILT=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# The whole model zoo (tests/zoo: the fast set of `make test` plus the zoo_full set), then its table; also the
# random-SIGKILL convert test at the 20 trials of issue 13 (make test runs 8).
zoo: setup
	$(PY) -m pytest -q tests/zoo -m "zoo_full or not zoo_full"
	DEPLOYKIT_KILL_TRIALS=20 $(PY) -m pytest -q tests/test_atomic_output.py -k random
	$(PY) tests/zoo/zoo_table.py

demo: setup
	$(VENV)/bin/deploykit demo

clean:
	rm -rf $(VENV) web/node_modules web/dist deploykit-demo
