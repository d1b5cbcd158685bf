# Calico, in Python. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV  := .venv
PY    := $(VENV)/bin/python
DEBS  := iproute2 nftables ipset iptables bird2 etcd-server util-linux containernetworking-plugins openssl \
         podman containerd runc busybox-static iperf3 conntrack gcc libc6-dev
PYTEST := $(VENV)/bin/pytest -p no:cacheprovider
# Kubernetes binaries for the lab's real clusters (make kube): a cache outside the checkout
KUBE_DIR ?= /var/cache/calico-py/kube/v1.20.2

.PHONY: help install check lint fmt typecheck ut it e2e chaos chaos-short test demo clean bench images kube

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## install Debian packages (if missing; waits for a busy dpkg lock) and the venv
	@scripts/apt-install.sh $(DEBS)

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

typecheck: install ## mypy --strict over the packages and the tests
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

# Every bench writes into one results file; the README's table is rendered from it at the end
# (a failed bench stops the run before the README changes). A bench not in this tree is skipped.
BENCHES := selector cli_apply cni_latency policy_latency tiers explain agent_memory agent_pods \
           controller_sync bgp_render lab_probe throughput flowlogs k8s typha_fanout
BENCH_RESULTS ?= $(CURDIR)/bench/results.json
BENCH_NOTE ?=

bench: install ## run every benchmark into bench/results.json, render README's table from it
	$(PY) -m bench.results start $(BENCH_RESULTS) "$(BENCH_NOTE)"
	for b in $(BENCHES); do \
	  if [ ! -f bench/$$b/__main__.py ]; then echo "== bench.$$b: not in this tree, skipped"; continue; fi; \
	  echo "== bench.$$b"; BENCH_RESULTS=$(BENCH_RESULTS) $(PY) -m bench.$$b || exit 1; done
	$(PY) -m bench.results render $(BENCH_RESULTS) README.md

images: install ## build the calico-py/{node,cni,kube-controllers} images into build/images/ (docker-archive)
	@scripts/apt-install.sh mmdebstrap podman containerd runc  # the build; the engines its tests load into
	$(PY) -m calico_images

kube: ## build Kubernetes v1.20.2 from Debian's source package into $(KUBE_DIR) (once)
	KUBE_DIR=$(KUBE_DIR) scripts/build-kube.sh

clean: ## remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
