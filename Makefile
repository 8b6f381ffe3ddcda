# The two commands of the README: `make demo` and `make test`. Both create or reuse .venv/
# with the pinned stack; a second run installs nothing (the stamp is newer than its inputs).
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
REQS := requirements/constraints.txt requirements/build.txt requirements/runtime.txt requirements/tests.txt requirements/deploy.txt setup.py

.PHONY: venv demo bench test lint format clean gpu-wheels gpu-check

venv: $(STAMP)

$(STAMP): $(REQS)
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	# torch first: mmcv is built against it (without it, mmcv silently lacks its ops).
	$(PIP) install -c requirements/constraints.txt -r requirements/build.txt
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(PIP) install --no-build-isolation -c requirements/constraints.txt \
	  -r requirements/runtime.txt
	$(PIP) install -c requirements/constraints.txt -r requirements/tests.txt -r requirements/deploy.txt
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

# For a GPU machine without network or mm* (tools/gpu_check.sh): pure-Python wheels of the
# mm* stack, mmcv without its compiled ops (mmcv-lite), fdconv-mm, and the pure-Python needs
# that machine lacks (Python 3.12, numpy 2), into $(GPU_WHEELS) (git-ignored, < 64 MiB).
GPU_WHEELS := .gpu-wheels
GPU_PYPI := --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

gpu-wheels: $(STAMP)
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)/src
	$(PIP) download -q $(GPU_PYPI) -d $(GPU_WHEELS) mmengine==0.10.7 mmdet==3.3.0 \
	  mmsegmentation==1.2.2 addict==2.4.0 yapf==0.43.0 platformdirs==4.14.8 termcolor==3.3.0 \
	  terminaltables==3.1.10 prettytable==3.18.0 wcwidth==0.9.4 ftfy==6.3.1 \
	  pycocotools==2.0.11 shapely==2.2.0 setuptools==80.10.2
	$(PIP) download -q --no-deps --no-binary :all: --no-cache-dir -d $(GPU_WHEELS)/src mmcv==2.1.0
	MMCV_WITH_OPS=0 $(PIP) wheel -q --no-deps --no-build-isolation --no-cache-dir \
	  -w $(GPU_WHEELS) $(GPU_WHEELS)/src/mmcv-2.1.0.tar.gz
	$(PIP) wheel -q --no-deps --no-build-isolation -w $(GPU_WHEELS) .
	rm -rf $(GPU_WHEELS)/src
	@du -ch $(GPU_WHEELS)/*.whl | tail -1 | sed 's/total/in $(GPU_WHEELS)\/ (the limit: 64 MiB)/'

gpu-check:
	bash tools/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
