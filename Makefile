# Two commands set up a fresh machine by themselves: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock requirements-dev.lock pyproject.toml | cksum | cut -d' ' -f1)
DURATION ?= 30
PYTEST_ARGS ?=

.PHONY: install run test test-unit test-integration bench lint clean

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

## run: all seven agents in one process, embedded bus, synthetic market, paper trading; summary at the end
run: install
	$(BIN)/wq run --duration $(DURATION)

## test: unit + integration tests (integration tests need Redis on 127.0.0.1:6379 and ../shared/data)
test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

## bench: latency benchmark tick -> fill over the real Redis (not a test)
bench: install
	$(BIN)/python bench/bench_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info src/*.egg-info
