# Two commands for a fresh machine (see README.rst):
#   make run    set up .venv if missing, install upperecho, run the server
#   make test   set up .venv if missing, install upperecho, lint, type-check, test
#   make unit   the fast unit tests alone (tests/unit), for while you edit
#   make bench  upperecho vs asyncio, uvloop and a C epoll server (a few minutes;
#               make bench-quick: about a minute per server).  Not part of test.
#   make sanitize  the transform's tests against the C accelerator built with
#               AddressSanitizer and UBSan (.ci/sanitize; CI runs it)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TCP ?= 12000
UDP ?= 12001

.PHONY: run test alltests lint typecheck unit install venv clean soak bench bench-quick sanitize accel

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A regular (non-editable) install: an editable install of this flat layout
# hides twisted/plugins from twistd.  Reinstalled on each run so the
# installed copy is the working tree.
install: $(BIN)/python
	# a stale build/ would put modules that no longer exist into the wheel
	rm -rf build
	$(BIN)/python -m pip install --quiet --disable-pip-version-check ".[test]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall .
	$(BIN)/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	$(MAKE) --no-print-directory accel
	touch $(VENV)/.installed

# The tests import the working tree, so the C accelerator is also built in
# place (upperecho/_accel.*.so, ignored by git); rebuilt when its source
# changes.  Where it cannot be built the tests of its half are skipped,
# except under `make test`, which requires it (REQUIRE_ACCEL=0 to run
# there without it).
ACCEL_STAMP := $(VENV)/.accel
accel: $(ACCEL_STAMP)
$(ACCEL_STAMP): upperecho/_accel.c setup.py $(BIN)/python
	$(BIN)/python setup.py --quiet build_ext --inplace
	touch $@
REQUIRE_ACCEL ?= 1

# The unit tests import the working tree: they need the dependencies, not a
# fresh install of upperecho, so once installed `make unit` skips pip.
$(VENV)/.installed:
	$(MAKE) install

run: install
	$(BIN)/twistd -n --pidfile= upperecho --tcp $(TCP) --udp $(UDP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy upperecho twisted/plugins tests

# Each test runs once: trial runs the trial-style classes, pytest the rest.
# `make unit`: the fast unit tests only (tests/unit: no sockets to other
# processes, no twistd); `make test`: lint, types, and every test.
unit: $(VENV)/.installed $(ACCEL_STAMP)
	$(BIN)/python -m twisted.trial --reporter=text tests.unit
	$(BIN)/python -m pytest -q --no-trial-classes tests/unit

alltests: export UPPERECHO_REQUIRE_ACCEL = $(REQUIRE_ACCEL)
alltests: install
	$(BIN)/python -m twisted.trial --reporter=text tests
	$(BIN)/python -m pytest -q --no-trial-classes

test: lint typecheck alltests

# Not part of `make test`: a real twistd on loopback under mixed and abusive
# clients for SOAK_SECONDS (60), one status line every 5 s (python -m soak.soak).
SOAK_SECONDS ?= 60
soak: install
	$(BIN)/python -m soak.soak --duration $(SOAK_SECONDS)

# bench/.venv holds uvloop for the peers; gcc builds the load generator and
# the C reference server.  Results: bench/results*.json and a table on stdout.
bench: install
	$(PYTHON) bench/run.py --setup
	cd bench && $(PYTHON) run.py --conns 16,128 --sizes 64,1024 --oneshot-conns 16 --out results.json

bench-quick: install
	$(PYTHON) bench/run.py --setup
	cd bench && $(PYTHON) run.py --quick --out results-quick.json

sanitize: install
	.ci/sanitize

clean:
	rm -rf $(VENV) build dist *.egg-info _trial_temp .mypy_cache .ruff_cache .hypothesis
	rm -f upperecho/_accel.*.so
	rm -rf bench/.venv bench/build bench/logs bench/data
