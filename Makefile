# dianfei — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
VENDOR := src/dianfei/web/static/vendor
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: setup demo test test-sqlite test-postgres lint audit lock bench clean

setup: $(VENV)/.installed $(VENDOR)/.installed

# Front-end files served by the console itself (no CDN: the branch network has no internet).
$(VENDOR)/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/echarts/dist/echarts.min.js node_modules/htmx.org/dist/htmx.min.js \
	   node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css $(VENDOR)/
	touch $@

# Reproducible installs: every package at the version and with the sha256 of the lock file
# (pip refuses a file whose hash differs); dianfei itself on top, without resolving again.
# --no-deps: the lock already lists every package (the universal lock's markers choose), so pip
# installs exactly those and never resolves a dependency's own requirement against the index —
# with resolving, pip 23.2 took pip-audit's `CacheControl[filecache]>=0.13.0` to PyPI's newest
# release and refused it as unpinned. `pip check` then proves the set is consistent.
$(VENV)/.installed: pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/pip check
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# The lock files again after a change to pyproject.toml's dependencies (needs uv: pip install uv).
# Universal: one lock for every platform and Python >= 3.11 (markers choose).
LOCK_ARGS := --generate-hashes --universal --python-version 3.11 --no-header --quiet
lock:
	uv pip compile $(LOCK_ARGS) -o requirements.lock pyproject.toml
	uv pip compile $(LOCK_ARGS) --extra dev -o requirements-dev.lock pyproject.toml

# Known vulnerabilities of the locked packages (pip-audit, PyPI's advisories). Skipped, saying
# so, where PyPI's vulnerability data cannot be reached; AUDIT_REQUIRED=1 makes that a failure.
audit: setup
	PIP_AUDIT=$(BIN)/pip-audit PYTHON=$(BIN)/python .ci/audit

demo: setup
	$(BIN)/dianfei demo $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# The whole suite on SQLite, then every database test again on PostgreSQL.
test: setup lint test-sqlite test-postgres

test-sqlite: setup
	DIANFEI_TEST_DB=sqlite $(BIN)/pytest -n 2 -p no:cacheprovider

test-postgres: setup
	DIANFEI_TEST_DB=postgresql DIANFEI_TEST_PG_URL=$(PG_URL) $(BIN)/pytest -n 2 -m db -p no:cacheprovider

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf var node_modules $(VENDOR) .pytest_cache .mypy_cache .ruff_cache
