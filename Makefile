# rag-assets: `make dev` installs and runs the platform; `make test` installs and runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RAG_HOME ?= $(CURDIR)/.rag
MILVUS_PORT ?= 19530
DAGSTER_PORT ?= 3000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install dev test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# llama-cpp-python builds from source, for this machine's CPU: portable plus the AVX-512/VNNI extensions it reports
# (deploy/llama_cmake_args.py); built first, without pip's cache, so a wheel built with other flags is not reused.
# constraints.txt pins every transitive dependency to the versions the tests ran with.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt deploy/llama_cmake_args.py
	CMAKE_ARGS="$$($(PY) deploy/llama_cmake_args.py)" $(BIN)/pip install -q --no-cache-dir -c constraints.txt "llama-cpp-python[server]"
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

## make dev: Milvus Lite server + dagster dev on http://127.0.0.1:$(DAGSTER_PORT)
dev: install
	$(BIN)/rag dev --home $(RAG_HOME) --port $(DAGSTER_PORT) --milvus-port $(MILVUS_PORT)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(RAG_HOME)
