# Two commands on a fresh Debian/Ubuntu machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/hsc_expansion.toml
ARGS   ?=

.PHONY: run test lint bench naive-venv install install-test system-tools clean

$(BIN)/bioreactor: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

install: $(BIN)/bioreactor

# System tools the tests drive as a user would, as command:debian-package pairs: mbpoll (a
# third-party Modbus master), socat (a serial/TCP terminal, as docs/serial-protocol.md uses it),
# Mosquitto (the MQTT broker the tests start) and its command-line clients, openssl (test certs),
# Chromium and its WebDriver (the dashboard's browser tests, driven by Selenium).
SYSTEM_TOOLS := mbpoll:mbpoll socat:socat mosquitto:mosquitto mosquitto_sub:mosquitto-clients \
	openssl:openssl chromium:chromium chromedriver:chromium-driver

$(VENV)/.test-deps: $(BIN)/bioreactor
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

system-tools:
	@PATH="$$PATH:/usr/sbin:/sbin"; missing=""; for pair in $(SYSTEM_TOOLS); do \
		command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (Debian packages)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

install-test: $(VENV)/.test-deps system-tools

run: install
	$(BIN)/bioreactor run $(CONFIG) $(ARGS)

# Two workers for the two cores; the slowest tests start first (see pyproject's pytest options).
# The lint runs first and fails the target: ruff's rule set, import-linter's contracts (the
# architecture's arrows) and mypy's settings are in pyproject.toml.
lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/lint-imports
	$(BIN)/mypy

test: install-test lint
	$(BIN)/python -m pytest -n 2 $(ARGS)

# The naive hand-written loop that `make bench` compares against runs in its own venv, from its
# own requirements (scipy, simple-pid): it is a user's script, not a dependency of the project.
NAIVE_VENV := benchmarks/naive_loop/.venv

$(NAIVE_VENV)/.installed: benchmarks/naive_loop/requirements.txt
	$(PYTHON) -m venv $(NAIVE_VENV)
	$(NAIVE_VENV)/bin/pip install --quiet -r benchmarks/naive_loop/requirements.txt
	@touch $@

naive-venv: $(NAIVE_VENV)/.installed

# The benchmarks start a private Mosquitto (the tests' plugin), hence the test install.
# `make bench ARGS=--quick` for short spans; `ARGS=--no-fleet` skips the fleets.
bench: install-test naive-venv
	$(BIN)/python benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) $(NAIVE_VENV) build *.egg-info runs
