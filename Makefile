# Each target bootstraps .venv from a bare python3 when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test soak bench lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/eventledger serve

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The HTTP bank workloads with faults for minutes (SOAK_SECONDS each, default 300).
SOAK_SECONDS ?= 300
soak: $(STAMP)
	HTTP_BANK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m pytest -q -s tests/reliability/test_http_bank.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
