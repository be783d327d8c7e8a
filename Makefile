# The two commands of the README. Each sets itself up on a fresh machine:
# a virtual environment, the package with its test extras, and a broker.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

# FAULTS: names of fault scenarios (tests/faults/harness.py SCENARIOS) for make faults/soak
FAULTS ?=
empty :=
space := $(empty) $(empty)
FAULT_FILTER = $(if $(strip $(FAULTS)),-k "$(subst $(space), or ,$(strip $(FAULTS)))")

.PHONY: test demo unit lint broker bench faults soak clean system

# What the tests run for real, from the distribution's packages: PostgreSQL (the run
# index's scale-out store), Prometheus (scrapes a worker), Chromium (the UI's tests drive
# it headless through Playwright; no browser is ever downloaded), and iproute2 and iptables
# (the fault suite puts brokers in network namespaces and cuts them off). Installed once,
# when missing.
SYSTEM_PACKAGES = postgresql prometheus chromium iproute2 iptables
APT = DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

## make system: install what the tests need (PostgreSQL, Prometheus, Chromium, iptables)
system:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v promtool >/dev/null \
	  && command -v chromium >/dev/null && command -v iptables >/dev/null \
	  && command -v ip >/dev/null; then :; \
	else echo "installing $(SYSTEM_PACKAGES) from the distribution"; \
	  $(SUDO) $(APT) install $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) $(APT) install $(SYSTEM_PACKAGES) >/dev/null; }; fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## make test: lint, types, then the whole suite on a real broker (provisioned if needed),
## the fault scenarios on their three-broker lab included (root); the soak tier is left
## to make soak
test: $(STAMP) system
	$(BIN)/ruff check streams processors tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/pytest --durations=30 -m "not soak"

## make faults: each fault scenario once on the three-broker lab, the fault table at the end
faults: $(STAMP) system
	$(BIN)/pytest tests/faults -m "faults or fault_scenarios" $(FAULT_FILTER)

## make unit: the fast pure tests only (no broker)
unit: $(STAMP)
	$(BIN)/pytest tests/unit

## make demo: the seed's money transfer and saga, end to end, with a worker killed mid-way
demo: $(STAMP)
	$(BIN)/python -m examples.demo

## make broker: start a local broker in the foreground (Ctrl-C stops it)
broker: $(STAMP)
	$(BIN)/everflow dev broker

## make soak: the fault suite in long mode (5 rounds of a sustained 300 s workload per
## fault) and the soak tier (a broker gone for 150 s), with the fault table at the end
## (also in tests/reports/faults.md); root, about 7 hours (44 min per fault here).
## FAULTS="leader-kill workers-cut-20s" soaks only the named scenarios (make faults too).
soak: $(STAMP) system
	EVERFLOW_SOAK=1 $(BIN)/pytest tests/faults -m "fault_scenarios or soak" --timeout 3600 $(FAULT_FILTER)

bench: $(STAMP) system
	$(BIN)/python -m benchmarks.copy_loop
	$(BIN)/python -m benchmarks.money_transfer
	$(BIN)/python -m benchmarks.visibility --postgres
	$(BIN)/python -m benchmarks.ui_runs
	$(BIN)/python -m benchmarks.ui_run

clean:
	rm -rf $(VENV) build *.egg-info
