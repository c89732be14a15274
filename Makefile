# Two entry points on a fresh machine with Python 3.11: `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install install-test

$(BIN)/python:
	$(shell command -v $(PY) || echo python3) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

demo: install
	$(BIN)/oncotwin demo $(DEMO_ARGS)

lint: install-test
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

# One pytest worker per core (pytest-xdist); a file's tests share a worker, so module fixtures
# are built once. On 2 cores the suite took 8.5 min this way against 15-20 min on one worker.
test: install-test lint
	$(BIN)/python -m pytest -q -n auto --dist loadfile $(PYTEST_ARGS)
