# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help run test lint format lock bench services browser clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs from the pinned lock files, so a fresh machine gets exactly what CI tested.
$(VENV)/.runtime-installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(VENV)/.dev-installed: requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@ $(VENV)/.runtime-installed

run: $(VENV)/.runtime-installed ## install, migrate the embedded SQLite database, serve on $(HOST):$(PORT), a log line per request
	$(BIN)/chatbots migrate
	$(BIN)/chatbots serve --host $(HOST) --port $(PORT) --access-log

test: $(VENV)/.dev-installed services browser lint ## install test tools, start services, lint, run the whole suite
	$(BIN)/pytest -n 2

lint: $(VENV)/.dev-installed ## ruff, mypy --strict, import-linter layer contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy domain application adapters entrypoints
	$(BIN)/lint-imports

format: $(VENV)/.dev-installed ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock: $(VENV)/.dev-installed ## re-pin requirements*.txt from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 -q -o requirements.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -q -o requirements-dev.txt

# The servers under test run from a virtualenv with the runtime requirements only, as deployed.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps -e .
	@touch $@

bench: $(VENV)/.dev-installed $(BENCH_VENV)/.installed services ## benchmarks (bench/), printed and written to bench/results.json
	BENCH_SERVER_PYTHON=$(abspath $(BENCH_VENV))/bin/python $(BIN)/python -m bench

# PostgreSQL and Redis run on this machine; start them when they are down.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true
	@for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /tmp >/dev/null || true

# Debian's Chromium drives the browser tests (tests/browser/) through Playwright; never
# `playwright install`, which downloads its own browser. Where it cannot be installed (no root,
# not Debian) the browser tests skip, and fail in CI, like the PostgreSQL ones.
browser: ## install Debian's chromium for the browser tests when it is missing
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) \
		|| echo "make browser: could not install chromium; tests/browser will skip (fail in CI)" >&2

clean: ## remove the virtualenv, caches and the local database
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .ruff_cache .pytest_cache chatbots.db chatbots.db-*
