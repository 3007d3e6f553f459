# Caducée — the two commands that matter: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo

.PHONY: demo test venv sysdeps lint typecheck pytest format clean

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/.installed

sysdeps:
	@bash scripts/install-system-deps.sh

demo: venv
	$(BIN)/caducee demo --dir $(DEMO_DIR)

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

pytest: venv sysdeps
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: venv sysdeps lint typecheck pytest

format: venv
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
