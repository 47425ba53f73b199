# The two quick-start commands: `make demo` (set up, build the Bach corpus, train, write songs) and
# `make test` (set up, run the test suite). Set-up is idempotent: it re-runs only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
COMPOSER := $(BIN)/composer

.PHONY: setup demo test lint bench clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bach,dev]'
	touch $@

demo: setup
	$(COMPOSER) corpus bach -o corpora/bach
	$(COMPOSER) corpus info corpora/bach

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check composer tests benchmarks

bench: setup
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python benchmarks/encode.py
