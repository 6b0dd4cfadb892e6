# chutes.miner: one command per job. `make test` is the test command CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
LAB := source tests/lab/env.sh &&
STAMP := $(VENV)/.installed
COLLECTION := collections/ansible_collections/chutes/miner
PY_PACKAGES := $(wildcard control_api/pyproject.toml graval/pyproject.toml)

# Operator targets act on this inventory: make deploy INVENTORY=inventories/mycluster
INVENTORY ?= inventories/example
PLAYBOOK := $(VENV)/bin/ansible-playbook -i $(INVENTORY)

.PHONY: help venv host services k8s-bin image lint sanity pytest molecule test lab lab-down collection-build \
	validate deploy add-node clean mutation

help:
	@echo "make help      - this list"
	@echo "make venv      - Python toolchain (ansible bundle, molecule, linters, galaxy-importer) from PyPI"
	@echo "make host      - prepare this machine for the podman lab (tests/lab/setup-host.sh)"
	@echo "make lab       - build the lab image, start cpu-0/gpu-0/gpu-1 + mirror host, run playbooks/site.yml"
	@echo "make lab-down  - remove every container, network and file the lab created"
	@echo "make k8s-bin   - build Kubernetes, etcd, containerd, runc, CNI from Go modules (cached)"
	@echo "make services  - PostgreSQL and Redis on 127.0.0.1 (Debian packages, started when down)"
	@echo "make image     - lab node, mirror and miner images (debootstrap, cached)"
	@echo "make lint      - yamllint, ansible-lint (production), ruff, mypy, shellcheck"
	@echo "make sanity    - ansible-test sanity + units and galaxy-importer on the built collection"
	@echo "make pytest    - repository, control_api and graval tests (real control plane, PostgreSQL, Redis)"
	@echo "make molecule  - every Molecule scenario on lab nodes"
	@echo "make collection-build - the collection tarball in .cache/dist"
	@echo "make test      - lint + sanity + pytest + molecule (what CI runs)"
	@echo "make mutation  - mutation score of the core modules (mutmut, slow, not in make test)"
	@echo "make clean     - lab-down, then remove .cache"
	@echo "operator (INVENTORY=inventories/<yours>, default inventories/example):"
	@echo "make validate  - check the inventory on the controller, every problem at once (EN/中文)"
	@echo "make deploy    - playbooks/site.yml on the inventory (validates first)"
	@echo "make add-node NODE=<name> - after adding the node to the inventory: check it is there, then deploy"

$(STAMP): requirements-dev.txt $(PY_PACKAGES)
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	for p in $(dir $(PY_PACKAGES)); do $(VENV)/bin/pip install -q -e "./$$p[dev]"; done
	touch $@

venv: $(STAMP)

host:
	$(LAB) tests/lab/setup-host.sh

# PostgreSQL and Redis on 127.0.0.1 (installed from Debian's packages when missing).
services:
	tests/services.sh

# Cached under /var/cache/chutes-miner-lab/k8s; a no-op when current.
k8s-bin:
	$(LAB) tests/timed k8s-bin tests/lab/k8s/build.sh >/dev/null

image: host
	$(LAB) tests/lab/build-image.sh
	$(LAB) tests/lab/build-mirror-image.sh >/dev/null
	$(LAB) tests/lab/build-miner-images.sh >/dev/null

lint: $(STAMP)
	$(LAB) tests/timed lint-yaml yamllint --strict .
	$(LAB) tests/timed lint-ansible ansible-lint --offline -q
	$(LAB) tests/timed lint-ruff ruff check .
	$(LAB) tests/timed lint-ruff-format ruff format --check .
	$(LAB) tests/timed lint-mypy tests/mypy-packages
	$(LAB) tests/timed lint-shell shellcheck -x tests/lab/*.sh tests/lab/images/*/*.sh tests/lab/k8s/*.sh tests/*.sh tests/registry_proxy/*.sh tests/timed tests/mypy-packages benchmarks/*.sh .ci/run

# The built tarball as Galaxy gets it: ansible-test sanity + units, galaxy-importer.
sanity: $(STAMP)
	$(LAB) tests/timed sanity tests/collection/sanity.sh

pytest: $(STAMP) host services k8s-bin
	tests/registry_proxy/setup.sh
	$(LAB) tests/timed pytest-repo python -m pytest -q -n 2 tests
	# Each package's tests run on their own: their conftest modules share the name `tests`.
	for t in $(wildcard control_api/tests graval/tests); do \
	  $(LAB) tests/timed pytest-$${t%%/*} python -m pytest -q -n 2 $$t; done

molecule: $(STAMP) image
	$(LAB) tests/timed molecule tests/run-molecule.sh

test: $(STAMP) host services k8s-bin image
	@rm -f .cache/timings
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory sanity
	$(MAKE) --no-print-directory pytest
	$(MAKE) --no-print-directory molecule
	@echo "== stage timings (s) =="; cat .cache/timings

# Slow and CPU heavy, so never part of `make test`: takes the shared lock itself.
# TARGETS="ss58 graval_auth" limits it (python tests/mutation/run.py --list).
mutation: $(STAMP) services
	flock -o /tmp/chutes-heavy.lock $(PY) tests/mutation/run.py $(TARGETS)

lab: $(STAMP) k8s-bin image
	$(LAB) tests/timed lab tests/lab/lab.sh up

lab-down:
	$(LAB) tests/lab/lab.sh down

collection-build: $(STAMP)
	mkdir -p .cache/dist
	$(VENV)/bin/ansible-galaxy collection build --force --output-path .cache/dist $(COLLECTION)

validate: $(STAMP)
	$(PLAYBOOK) playbooks/validate.yml

deploy: $(STAMP)
	$(PLAYBOOK) playbooks/site.yml

# A node joins by an inventory edit and a run on the whole network: WireGuard peers change on
# every node (wg syncconf, no tunnel is cut), so there is no --limit.
add-node: $(STAMP)
	@test -n "$(NODE)" || { echo "usage: make add-node NODE=<inventory name> [INVENTORY=...]"; exit 2; }
	$(VENV)/bin/ansible-inventory -i $(INVENTORY) --host $(NODE) >/dev/null
	$(PLAYBOOK) playbooks/site.yml

clean: lab-down
	rm -rf .cache
