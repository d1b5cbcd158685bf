# Calico, in Python. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV  := .venv
PY    := $(VENV)/bin/python
DEBS  := iproute2 nftables ipset iptables bird2 etcd-server util-linux containernetworking-plugins openssl \
         podman containerd runc busybox-static iperf3
PYTEST := $(VENV)/bin/pytest -p no:cacheprovider

.PHONY: help install check lint fmt typecheck ut it e2e chaos chaos-short test demo clean bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## install Debian packages (if missing) and the venv with every command
	@missing=""; for p in $(DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1
	$(PY) -m pip install -q -e '.[dev]' 2>&1 | { grep -v '^WARNING: Location' || true; }
	touch $@

fmt: install ## format the code
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

lint: install ## ruff + import-linter contracts
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/lint-imports

typecheck: install ## mypy --strict over the package
	$(VENV)/bin/mypy

check: lint typecheck ## lint + typecheck (the pre-push gate)

ut: install ## unit tests (no root needed)
	$(PYTEST) -n 2 tests/unit

it: install ## integration tests (root: netns, real etcd, nft, bird)
	$(PYTEST) -n 2 tests/integration

e2e: install ## end-to-end tests (multi-node labs)
	$(PYTEST) tests/e2e

chaos-short: install ## the fault scenarios' short form (part of make test); prints the table
	rm -rf build/chaos
	$(PYTEST) tests/chaos; rc=$$?; $(PY) -m tests.chaos.report || true; exit $$rc

chaos: install ## fault scenarios, long form (more rounds, 300-pod storm, more fuzz); table + JSON
	rm -rf build/chaos
	CALICO_CHAOS=long $(PYTEST) tests/chaos; rc=$$?; $(PY) -m tests.chaos.report --save || true; exit $$rc

test: check ut it e2e chaos-short ## everything CI runs

demo: install ## bring up a 3-node lab and show policy at work
	scripts/demo.sh

bench: install ## run the benchmarks
	for b in selector cli_apply cni_latency policy_latency controller_sync bgp_render lab_probe throughput; do \
	  echo "== bench.$$b"; $(PY) -m bench.$$b || exit 1; done

clean: ## remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
