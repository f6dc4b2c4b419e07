# Steward: `make run` and `make test` are the README's Quick start.
# Variables (on the command line): `make run PORT=8081 HOST=0.0.0.0`; VENV=path uses (or
# creates) another virtualenv, e.g. one shared by several checkouts of the same pyproject.toml.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
# The stamp's name carries pyproject.toml's content hash: a changed pyproject.toml installs
# again, a fresh checkout of the same one (newer mtime) does not.
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
# Not `?=`: HOST and PORT are often set in a shell's environment for other programs.
HOST   := 127.0.0.1
PORT   := 8080
TEST_WORKERS ?= 2
JS_DIR := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.installed
# CPU-only torch first (as the Dockerfile does), so resolving torch's dependants never pulls
# a CUDA build and its NVIDIA packages. Where that index cannot be reached, pip's own
# configuration decides (a machine with a local CPU wheel, or PyPI's build).
TORCH := torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: help install js-deps run chat test eval lint typecheck unit integration bench bench-http fuzz chaos clean

help:  ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-12s %s\n", $$1, $$2}'

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --timeout 20 --retries 1 --index-url $(TORCH_INDEX) "$(TORCH)" \
	    2>$(VENV)/torch-cpu-index.log \
	  || { echo "$(TORCH_INDEX) unreachable ($(VENV)/torch-cpu-index.log): torch from pip's configured indexes"; \
	       $(BIN)/pip install --quiet "$(TORCH)"; }
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -m core.knowledge.onnx_export
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) js-deps  ## Create .venv and install Steward with its dev tools (and the JS SDK suite's)

# Without npm, outside CI: say so and go on (tests/e2e/test_js_sdk.py then skips).
$(JS_STAMP): $(JS_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  echo "npm ci in $(JS_DIR)" && cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error \
	    && touch node_modules/.installed; \
	elif [ "$$CI" = true ]; then \
	  echo "npm is not installed: the JS SDK suite (tests/js) needs Node 20+" >&2; exit 1; \
	else \
	  echo "npm is not installed: skipping tests/js's dependencies (its e2e test will skip)"; \
	fi

js-deps: $(JS_STAMP)  ## npm ci for the JS SDK e2e suite (tests/js), again when its lockfile changes

run: $(STAMP)  ## Serve on 127.0.0.1:8080 (make run PORT=8081 HOST=0.0.0.0); indexes and seeds on first start
	$(BIN)/steward serve --host $(HOST) --port $(PORT)

chat: $(STAMP)  ## Talk to the agent in the terminal (indexes the sample policies only if there is no index)
	$(BIN)/steward ingest --if-missing
	$(BIN)/steward seed
	$(BIN)/steward chat

lint: $(STAMP)  ## ruff (lint and format), and the import contracts (layers, no cycles)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)  ## mypy: --strict on our packages, a relaxed profile on tests/ and bench/ (pyproject.toml)
	$(BIN)/mypy

unit: $(STAMP)  ## Fast tests, no services
	$(BIN)/pytest tests/unit

integration: $(STAMP)  ## Integration tests: real Postgres (STEWARD_TEST_PG), mock LLM over HTTP
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile tests/integration

test: lint typecheck js-deps  ## Lint, type-check, run the whole test suite and the eval gate
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile
	$(BIN)/python -m tests.run_eval_gate --no-progress

eval: $(STAMP)  ## Offline evals against the mock provider, compared with the baseline
	$(BIN)/steward eval --mock --compare evals/baseline.json

fuzz: $(STAMP)  ## Schemathesis over the OpenAPI schema, slow profile (CI runs 3 examples per operation)
	STEWARD_FUZZ_EXAMPLES=$${STEWARD_FUZZ_EXAMPLES:-50} $(BIN)/pytest -s tests/e2e/test_schemathesis.py
chaos: $(STAMP)  ## Chaos test, long: kills, a Postgres restart, LLM faults (CHAOS_DURATION_S=240 CHAOS_SEED=random)
	STEWARD_CHAOS_DURATION_S=$${CHAOS_DURATION_S:-240} STEWARD_CHAOS_SEED=$${CHAOS_SEED:-} $(BIN)/pytest tests/chaos -s -p no:cacheprovider

bench: $(STAMP)  ## Graph overhead benchmark (prints ratios against a bare graph)
	$(BIN)/python bench/graph_overhead.py

bench-http: $(STAMP)  ## HTTP load: steward, langgraph dev, Aegra; ~13 min (BENCH_ARGS=--quick: ~7)
	$(BIN)/python bench/http_load.py $(BENCH_ARGS)

clean:  ## Remove the virtualenv and local data
	rm -rf $(VENV) .steward .mypy_cache .ruff_cache .pytest_cache $(JS_DIR)/node_modules
