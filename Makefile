# Two commands on a fresh Debian/Ubuntu machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/hsc_expansion.toml
ARGS   ?=

.PHONY: run test bench install install-test clean

$(BIN)/bioreactor: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

install: $(BIN)/bioreactor

$(VENV)/.test-deps: $(BIN)/bioreactor
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install-test: $(VENV)/.test-deps

run: install
	$(BIN)/bioreactor run $(CONFIG) $(ARGS)

test: install-test
	$(BIN)/python -m pytest $(ARGS)

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info runs
