# cxstream — make help lists the targets.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Written by `cxstream native build` after the mypyc build; the module list lives
# in pipeline/tools/native.py, which skips the compile when the listed sources are unchanged.
NATIVE := pipeline/core/_native.json

.DEFAULT_GOAL := help
.PHONY: help setup system-deps kafka native demo test unit integration lint typecheck bench bench-peers \
	schema-check clean clean-native

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

system-deps: ## install Debian packages the tests use (PostgreSQL, Prometheus, Chromium); needs root
	deploy/install-system-deps.sh

kafka: $(STAMP) ## fetch the Apache Kafka broker artifacts (Maven) into the cache
	$(BIN)/cxstream broker --fetch-only

setup: $(STAMP) system-deps kafka ## everything the tests and the demo need

native: $(NATIVE) ## compile the stream core with mypyc (needs gcc and the Python headers)

$(NATIVE): $(STAMP) pipeline/tools/native.py $(wildcard pipeline/core/*.py)
	$(BIN)/cxstream native build

# The demo does not need the compiled core: without a C compiler it runs the sources.
demo: $(STAMP) kafka ## run the whole pipeline on the embedded broker and SQLite until Ctrl-C
	@$(MAKE) --no-print-directory native || echo "note: could not compile the stream core \
	(gcc and the Python headers are needed); the demo runs the interpreted core"
	$(BIN)/cxstream demo

test: setup lint typecheck native ## lint, types, unit + integration tests (compiled core), unit tests again on the interpreted core
	$(BIN)/python -m pytest tests
	CXSTREAM_CORE=interpreted $(BIN)/python -m pytest tests/unit -q

unit: $(STAMP) native ## unit tests only (no services)
	$(BIN)/python -m pytest tests/unit

integration: setup ## integration tests only
	$(BIN)/python -m pytest tests/integration

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check pipeline agents tests
	$(BIN)/ruff format --check pipeline agents tests

typecheck: $(STAMP) ## mypy on the package
	$(BIN)/mypy

schema-check: $(STAMP) ## FULL_TRANSITIVE compatibility of every stored schema version
	$(BIN)/cxstream schema check

bench: setup native ## all benchmarks (codec, replay, pipeline on the local broker, sink into PostgreSQL)
	$(BIN)/cxstream bench codec
	$(BIN)/cxstream bench replay --events 100000
	$(BIN)/cxstream bench pipeline --events 100000
	$(BIN)/cxstream bench sink

# Maven builds the Kafka Streams peer on first use (pipeline/tools/peers/kstreams, online once).
bench-peers: $(STAMP) kafka native ## cxstream against Kafka Streams (exactly-once, at-least-once) on one local broker
	$(BIN)/cxstream bench peers --events 100000

clean: ## remove local state (var/), caches; keeps the venv, the Kafka cache and the compiled core
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

clean-native: ## remove the compiled core (back to the interpreted one)
	test ! -x $(BIN)/cxstream || $(BIN)/cxstream native clean
