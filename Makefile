# Two entry points, both from a clean clone:
#   make compare   set up .venv and run `lmeval compare` on the built-in corpus
#   make test      set up .venv and run the test suite (what CI runs)
#   make bench     the benchmarks against KenLM, NLTK and d2l (reads ../shared/corpora)
# TORCH is what pip installs first for torch (pip arguments): the default is the
# version this project is developed and tested with.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: compare test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

compare: $(VENV)/.installed
	$(BIN)/lmeval compare

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q examples/lmeval-cache/tests

bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python benchmarks/ngram_vs_peers.py
	$(BIN)/python benchmarks/ngram_scaling.py --sizes 1 10
	$(BIN)/python benchmarks/rnn_throughput.py
	$(BIN)/python benchmarks/rnn_quality.py
	$(BIN)/python benchmarks/verify_cost.py
	$(BIN)/python benchmarks/isolate_cost.py
	$(BIN)/python benchmarks/generate_scaling.py
	$(BIN)/python benchmarks/bootstrap_cost.py
	$(BIN)/python benchmarks/bench_suite.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
