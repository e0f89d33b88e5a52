# Streamward: `make run` to try it, `make test` to check it. Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test fuzz lint format bench install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Streamward needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: migrate, create the demo organisation on first start, serve on http://127.0.0.1:8000
# Passkeys need a host name (browsers refuse WebAuthn on an IP address): the demo is served as localhost.
run: export STREAMWARD_PUBLIC_BASE_URL ?= http://localhost:8000
run: $(STAMP)
	$(BIN)/streamward demo --if-missing
	@echo "Open $$STREAMWARD_PUBLIC_BASE_URL/ and sign in with one of the users above (API reference: /api/docs)."
	$(BIN)/streamward serve

## test: the whole suite on SQLite, and on PostgreSQL when reachable (CI requires it)
test: $(STAMP)
	@# axe-core for the browser tests' accessibility check (npm registry, pinned; skipped without npm)
	@command -v npm >/dev/null && npm install --prefix $(VENV)/axe-core --no-audit --no-fund --no-save --no-package-lock --silent axe-core@4.14.1 || true
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## fuzz: schemathesis against a real server on a fresh PostgreSQL database (FUZZ_ARGS="--max-examples 50")
fuzz: $(STAMP)
	$(BIN)/python tests/fuzz/run_schemathesis.py $(FUZZ_ARGS)

## lint: style, types and the layer contracts (ARCHITECTURE.md)
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/argon2_sets.py
	for members in 10000 100000 1000000; do $(BIN)/python bench/users.py --members $$members || exit 1; done
	cd bench && ../$(BIN)/python player_reads.py
	$(BIN)/python bench/delivery.py
	$(BIN)/python bench/delivery_latency.py
	$(BIN)/python bench/limits.py
	$(BIN)/python bench/mfa_login.py
	cd bench && ../$(BIN)/python housekeeping.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache bench/results
