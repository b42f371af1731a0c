# dianfei — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: setup demo test test-sqlite test-postgres lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

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
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
