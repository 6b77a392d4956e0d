# Zoe Panel. `make run` sets everything up and serves the panel on http://127.0.0.1:8501;
# `make test` sets up, installs what the tests need and runs all of them.
SHELL := /bin/bash
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: run setup test test-fast test-vllm-docker lint bench faults llama-server clean

run: setup
	$(PY) -m zoe_panel.web --server.address $(HOST) --server.port $(PORT)

setup:
	@scripts/setup.sh

llama-server:
	@scripts/build_llama_server.sh

test: setup
	@scripts/test.sh

test-fast: setup
	@scripts/test.sh -m "not integration and not docker and not browser"

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: setup
	@scripts/bench.sh

# vLLM on the Docker backend, for real: builds a 4.5 GB CPU vLLM image from the cache's vLLM venv first
test-vllm-docker: setup
	@ZOE_VLLM_DOCKER=1 scripts/test.sh tests/integration/test_vllm_docker.py

faults: setup
	@ZOE_FAULT_FULL=1 ZOE_FAULT_REPORT=bench/results/faults.md scripts/test.sh -m faults

clean:
	rm -rf .venv .pytest_cache .ruff_cache .mypy_cache
