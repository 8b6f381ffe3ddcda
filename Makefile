# The two commands of the README: `make demo` and `make test`. Both create or reuse .venv/
# with the pinned stack; a second run installs nothing (the stamp is newer than its inputs).
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
REQS := requirements/constraints.txt requirements/build.txt requirements/runtime.txt requirements/tests.txt setup.py

.PHONY: venv demo bench test lint format clean

venv: $(STAMP)

$(STAMP): $(REQS)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	# torch first: mmcv is built against it (without it, mmcv silently lacks its ops).
	$(PIP) install -c requirements/constraints.txt -r requirements/build.txt
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(PIP) install --no-build-isolation -c requirements/constraints.txt \
	  -r requirements/runtime.txt
	$(PIP) install -c requirements/constraints.txt -r requirements/tests.txt
	$(PIP) install --no-build-isolation --no-deps -e .
	@$(VPY) -c "from mmcv.ops import RoIAlign, nms" 2>/dev/null || { \
	  echo "ERROR: mmcv is installed without its compiled ops (mmcv.ops does not load)."; \
	  echo "Remove it and the cached wheel, then rerun make:"; \
	  echo "  $(PIP) uninstall -y mmcv && $(PIP) cache remove mmcv"; exit 1; }
	touch $(STAMP)

demo: $(STAMP)
	$(VPY) tools/demo/run_demo.py

bench: $(STAMP)
	$(VPY) tools/benchmark.py --json work_dirs/benchmark.json

test: $(STAMP)
	$(VPY) -m pytest

lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

format: $(STAMP)
	$(VPY) -m ruff check --fix .
	$(VPY) -m ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
