# The two commands: `make run` and `make test`. Both are idempotent and do
# their own set-up on a fresh machine. `make check` is the quick loop: the
# tests that need no server.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  := deploy/dev/stack
PYTEST_ARGS ?=

.PHONY: run test check lint venv tools stack-up stack-down bench clean

# The venv is rebuilt only when pyproject.toml or the C source changes. The install compiles the SIN
# scanner's engine (keys/_sin_scan.c): it needs a C compiler and the Python headers (Debian: gcc, python3-dev).
$(VENV)/.installed: pyproject.toml keys/_sin_scan.c
	$(PYTHON) -c 'import os, shutil, sys, sysconfig; sys.exit(not shutil.which("cc") or not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || apt-get install -y -q gcc python3-dev
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint,ops]'  # ops: the openstack CLI the runbooks use
	touch $@

venv: $(VENV)/.installed

# System tools the tests run: promtool checks and unit-tests deploy/observability's alert rules. Debian
# ships it only in the prometheus package; installed without recommends, and its server is stopped and
# disabled if systemd started it (nothing of ours listens beyond loopback).
tools:
	@command -v promtool >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get install -y -q --no-install-recommends prometheus || \
	  { $$sudo apt-get update -q && $$sudo apt-get install -y -q --no-install-recommends prometheus; }; \
	  if [ -d /run/systemd/system ]; then $$sudo systemctl disable --now prometheus.service || true; fi; }

run: venv
	$(VENV)/bin/replicator serve

# The gates CI runs before the tests: lint and format (ruff), types (mypy: strict on keys/ and regions/),
# the import contracts in pyproject.toml (import-linter), and no product module over 500 lines.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@big=$$(find replicator keys regions -name '*.py' -exec awk 'END { if (NR > 500) print FILENAME ": " NR " lines" }' {} \;); \
	if [ -n "$$big" ]; then echo "product modules over 500 lines (split them by job):"; echo "$$big"; exit 1; fi

# The quick loop while you work: lint, then every test that needs no server (not marked `stack`:
# tests/support/stack.py), with no dev stack started.
# They share nothing, so they run on every core (make test stays serial: its fault tests stop servers).
check: lint tools
	$(PY) -m pytest -m "not stack" -q -n auto --dist worksteal $(PYTEST_ARGS)

# Starts the dev stack, runs every suite against it, and stops the stack
# whatever the outcome; the exit status is pytest's.
test: venv tools
	$(STACK) up || { $(STACK) down; exit 1; }  # the servers that did start are not left behind
	@set -a; eval "$$($(STACK) env)"; set +a; \
	$(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	$(STACK) down; exit $$status

stack-up:
	$(STACK) up

stack-down:
	$(STACK) down

# Every benchmark; they print tables and write JSON to bench/results/. The
# API and reconcile benches need the dev stack (Azurite, Swift) and rclone.
bench: venv
	command -v rclone >/dev/null || apt-get install -y -q rclone
	$(STACK) up
	@set -a; eval "$$($(STACK) env)"; set +a; status=0; \
	for b in crypto sin sin_containers api client reconcile journal cluster versions; do $(PY) bench/$$b.py || status=1; done; \
	$(STACK) down; exit $$status

clean:
	rm -rf $(VENV) var .pytest_cache
