# The two quick-start commands: `make demo` (set up, build the Bach corpus, train, write songs) and
# `make test` (set up, run the test suite). Set-up is idempotent: it re-runs only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
COMPOSER := $(BIN)/composer

.PHONY: setup demo test lint bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bach,dev,live]'
	touch $@

# The main job on the built-in corpus. Each step reuses what is there: the corpus is rebuilt only
# incrementally, a training run resumes where it stopped (a finished run stops at once), songs are rewritten.
DEMO_MINUTES ?= 5
demo: setup
	$(COMPOSER) corpus bach -o corpora/bach
	@if [ -d checkpoints/bach/last ]; then \
		$(COMPOSER) train corpora/bach -o checkpoints/bach --resume --max-minutes $(DEMO_MINUTES); \
	else \
		$(COMPOSER) train corpora/bach -o checkpoints/bach --max-minutes $(DEMO_MINUTES); \
	fi
	$(COMPOSER) generate checkpoints/bach -o songs -n 4 --bars 16 --seed 1 --plot --force
	@echo "Done: open songs/song_001.mid in your DAW (songs/song_001.png shows its piano roll)."

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check composer tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python benchmarks/encode.py
	$(BIN)/python benchmarks/key.py
	$(BIN)/python benchmarks/gpu_check.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/quality.py
	$(BIN)/python benchmarks/long_range.py --variants "base;no-penalty:cell_penalty=0;chrono:chrono_init=128"
	$(BIN)/python benchmarks/long_lag.py
	$(BIN)/python benchmarks/form.py
