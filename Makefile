# Everyday targets. `make setup` prepares a fresh Debian machine (as root).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test unit lint demo bench bench-quick shim clean sweep fuzz e2e-image

setup:
	bash scripts/setup

test:
	$(VENV)/bin/pytest -n 2

unit:
	$(VENV)/bin/pytest tests/unit -q

lint:
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo:
	$(VENV)/bin/multihome demo

bench:
	$(PY) -m bench

bench-quick:
	$(PY) -m bench --quick

shim:
	$(MAKE) -C shim

# The long fuzz run (docs/limits.md): the thin plugin on a real node, and the
# shim's input; the counts of answers go to fuzz-report.txt.
FUZZ_EXAMPLES ?= 6000
fuzz:
	MULTIHOME_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) MULTIHOME_FUZZ_REPORT=fuzz-report.txt \
	  $(VENV)/bin/pytest -q --timeout=7200 --hypothesis-show-statistics tests/faults/test_fuzz.py \
	  tests/e2e/test_shim.py -k fuzz

# The node image built from Debian packages and run with podman as the kubelet
# runs deploy/kubernetes/daemonset.yaml (root; needs mmdebstrap, podman, runc).
e2e-image:
	bash scripts/e2e-image-setup
	$(PY) scripts/e2e_image.py

# Removes namespaces and links that an interrupted test run left behind.
sweep:
	$(PY) -m multihome.testing.lab sweep

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
