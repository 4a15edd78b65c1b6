# Each target bootstraps .venv from a bare python3 when it is missing or stale.
# `serve` installs the runtime dependencies only; the other targets add the dev tools
# (pytest, mypy, ruff, schemathesis...). Each has its own stamp.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUNTIME_STAMP := $(VENV)/.installed-runtime

.PHONY: serve test soak bench lint typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUNTIME_STAMP)

serve: $(RUNTIME_STAMP)
	$(BIN)/eventledger serve

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The fault tests for minutes: the HTTP bank workloads (SOAK_SECONDS each), the SQLite
# crash loop (SOAK_KILLS kills), the PostgreSQL crash (SOAK_PG_RESTARTS crashes) and
# the seeded simulation (SOAK_SIM_SEEDS seeds per store and commit mode), and
# schemathesis over the whole OpenAPI document (SOAK_FUZZ_EXAMPLES per operation, then
# SOAK_FUZZ_SEQUENCES stateful sequences of up to SOAK_FUZZ_STEPS calls along its links).
SOAK_SECONDS ?= 300
SOAK_KILLS ?= 1000
SOAK_PG_RESTARTS ?= 20
SOAK_SIM_SEEDS ?= 200
SOAK_FUZZ_EXAMPLES ?= 300
SOAK_FUZZ_SEQUENCES ?= 100
SOAK_FUZZ_STEPS ?= 16
soak: $(STAMP)
	HTTP_BANK_SECONDS=$(SOAK_SECONDS) CRASH_LOOP_KILLS=$(SOAK_KILLS) \
	PG_RESTART_ROUNDS=$(SOAK_PG_RESTARTS) SIM_SEEDS=$(SOAK_SIM_SEEDS) \
	FUZZ_EXAMPLES=$(SOAK_FUZZ_EXAMPLES) FUZZ_STATEFUL_EXAMPLES=$(SOAK_FUZZ_SEQUENCES) \
	FUZZ_STATEFUL_STEPS=$(SOAK_FUZZ_STEPS) \
	  $(BIN)/python -m pytest -q -s \
	  tests/reliability/test_http_bank.py tests/reliability/test_crash_loop.py \
	  tests/reliability/test_postgres_restart.py tests/reliability/test_simulation.py \
	  tests/api/test_fuzz.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
