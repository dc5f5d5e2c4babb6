# Everything runs as root on a fresh Debian machine: the targets install what they need.
SHELL := /bin/bash
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
PYTHON311 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.11*/bin/python3.11) $(shell command -v python3.11))
PYTHON39 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.9*/bin/python3.9) $(shell command -v python3.9))
APT_PACKAGES := openvswitch-switch iproute2 tcpdump arping ethtool iputils-ping procps nftables iperf3
VENV := .venv
VENV_RYU := .venv-ryu

.PHONY: demo test install deps lint unit lab bench fuzz check clean

demo: install
	$(VENV)/bin/python -m tests.demo

test: install lint unit lab

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# Debian's package starts a system OVS where systemd runs; the lab runs its own, so stop nothing here.

install: deps $(VENV)/.installed $(VENV_RYU)/.installed

$(VENV)/.installed: setup.cfg setup.py
	test -n "$(PYTHON311)" || { echo "Python 3.11 not found (pyenv or python3.11)"; exit 1; }
	$(PYTHON311) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[osken,test,lint]"
	touch $@

# Ryu 4.34 runs only on Python 3.9 with eventlet 0.30.2 and builds only with setuptools<58.
$(VENV_RYU)/.installed: setup.cfg setup.py
	test -n "$(PYTHON39)" || { echo "Python 3.9 not found (pyenv versions)"; exit 1; }
	$(PYTHON39) -m venv $(VENV_RYU)
	$(VENV_RYU)/bin/pip install -q "setuptools<58" wheel
	$(VENV_RYU)/bin/pip install -q --no-build-isolation -e ".[ryu,test]"
	touch $@

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Unit tests need no root: the pure core under both Pythons, the OpenFlow layer under both frameworks.
unit: install
	$(VENV)/bin/python -m pytest -q tests/unit
	$(VENV_RYU)/bin/python -m pytest -q tests/unit

# The packet-in fuzz at a million frames per runtime (6 to 9 minutes each here; `make unit` runs 150,000).
# A new seed each run unless NLBFLOW_FUZZ_SEED is given; the test prints it, and every failure names it.
ifndef NLBFLOW_FUZZ_SEED
NLBFLOW_FUZZ_SEED := $(shell date +%s)
endif
fuzz: install
	NLBFLOW_FUZZ_FRAMES=1000000 NLBFLOW_FUZZ_SEED=$(NLBFLOW_FUZZ_SEED) $(VENV)/bin/python -m pytest -q -s tests/unit/test_fuzz.py
	NLBFLOW_FUZZ_FRAMES=1000000 NLBFLOW_FUZZ_SEED=$(NLBFLOW_FUZZ_SEED) $(VENV_RYU)/bin/python -m pytest -q -s tests/unit/test_fuzz.py

# Lab tests need root, Open vSwitch and network namespaces; they fail (not skip) when NLBFLOW_REQUIRE_LAB=1.
lab: install
	$(VENV)/bin/python -m pytest -q tests/lab

# Measurements, not tests (bench/README.md, docs/performance.md): needs root and OVS like the lab. Every
# benchmark in turn (bench/__main__.py); NLBFLOW_BENCH_SHORT=1 (or BENCH_ARGS=--short) runs each with one
# runtime and small sizes, in well under a minute each; BENCH_ARGS="--only registration --large" picks one.
bench: install
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

check: lint unit

clean:
	rm -rf $(VENV) $(VENV_RYU) *.egg-info
