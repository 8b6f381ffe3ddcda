#!/usr/bin/env bash
# One command for a GPU machine: the CUDA tests and the CUDA benchmarks of fdconv-mm.
#
#   make gpu-wheels            # here: pure-Python mm* wheels into .gpu-wheels/ (git-ignored)
#   bash tools/gpu_check.sh    # there, from the repository root (also `make gpu-check`)
#
# Runs under that machine's own interpreter ($PYTHON, default python3, no venv). Where
# mmengine is missing, the wheels of .gpu-wheels/ ($GPU_WHEELS) go into /tmp/site
# ($GPU_SITE) and PYTHONPATH. They hold mmcv 2.1.0 built without its compiled ops; as
# mmdet's and mmseg's model packages import mmcv.ops, this script then writes a stand-in
# mmcv/_ext.py into that folder (never into an installed mmcv): every compiled op raises
# when called. Faster R-CNN needs those ops (RoIAlign, NMS) and is skipped.
#
# Outputs under $OUT (work_dirs/gpu_check when unset), at most 9 files: gpu_check.log and
# one JSON per benchmark. The whole check is sized for about 9 minutes on an H200; each
# step has its own time limit, and a failed step fails the check at the end.
# Without a GPU it says so, runs a short CPU dry run of the same steps and exits 0.
set -uo pipefail

cd "$(dirname "$0")/.."
OUT=${OUT:-work_dirs/gpu_check}
PYTHON=${PYTHON:-python3}
WHEELS=${GPU_WHEELS:-.gpu-wheels}
SITE=${GPU_SITE:-/tmp/site}
LOG="$OUT/gpu_check.log"
mkdir -p "$OUT"
: >"$LOG"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
FAILED=()

say() { echo "== $*" | tee -a "$LOG"; }

# step NAME SECONDS COMMAND...: run one step, its output into the log, under a time limit.
step() {
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  say "$name: $*"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  say "$name: exit $rc after $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || FAILED+=("$name")
}

if ! "$PYTHON" -c 'import mmengine' 2>/dev/null; then
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    say "mmengine is not installed and $WHEELS/ holds no wheels: run 'make gpu-wheels' first"
    exit 1
  fi
  say "installing $(ls "$WHEELS"/*.whl | wc -l) wheels of $WHEELS/ into $SITE"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl 2>&1 | tee -a "$LOG" || exit 1
  if [ -d "$SITE/mmcv" ] && [ ! -e "$SITE/mmcv/_ext.py" ]; then
    cat >"$SITE/mmcv/_ext.py" <<'EOF'
"""Stand-in for mmcv's compiled ops, written by tools/gpu_check.sh into a lite mmcv."""


def __getattr__(name):
    if name.startswith('__'):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise RuntimeError(f'mmcv op {name!r}: this mmcv is built without its compiled ops')

    return missing
EOF
  fi
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"

say "$("$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"
BENCH=("$PYTHON" tools/benchmark.py)
if "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  say "GPU: $("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name())')"
  command -v nvidia-smi >/dev/null && nvidia-smi -L | tee -a "$LOG"
  step tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda \
    tests/test_device tests/test_layers/test_mixed_precision_and_compile.py
  step layers-b2 50 "${BENCH[@]}" --device cuda --layers-only --json "$OUT/layers_b2.json"
  for batch in 2 8; do
    step "layers-full-b$batch" 60 "${BENCH[@]}" --device cuda --layers-only --full-resolution \
      --batch "$batch" --json "$OUT/layers_full_b$batch.json"
  done
  # The CPU cost table's pair (docs/benchmarks.md): the ResNet-50 backbone at 512^2, b2/b1.
  step resnet50-512 45 "${BENCH[@]}" --device cuda --models-only --models resnet50 \
    --image-size 512 --train-batch 2 --infer-batch 1 --json "$OUT/resnet50_512.json"
  MODELS=(--device cuda --models-only --models resnet50 swin_t upernet_r50 --image-size 512
    --train-batch 4 --infer-batch 1)
  step models 90 "${BENCH[@]}" "${MODELS[@]}" --json "$OUT/models.json"
  step models-compile 150 "${BENCH[@]}" "${MODELS[@]}" --compile --repeat 3 \
    --json "$OUT/models_compile.json"
  say "Faster R-CNN: skipped (it needs mmcv's compiled CUDA ops, RoIAlign and NMS)"
else
  say "no GPU: a short dry run of the CPU part (nothing is measured)"
  step tests-collect 60 "$PYTHON" -m pytest -q -p no:cacheprovider -m cuda --collect-only \
    tests/test_device tests/test_layers/test_mixed_precision_and_compile.py
  step layers 60 "${BENCH[@]}" --device cpu --layers-only --repeat 1 --warmup 0 --threads 1 \
    --json "$OUT/layers.json"
  step models 60 "${BENCH[@]}" --device cpu --models-only --models resnet50 --image-size 64 \
    --repeat 1 --warmup 0 --threads 1 --json "$OUT/models.json"
  say "Faster R-CNN: skipped (it needs mmcv's compiled CUDA ops, RoIAlign and NMS)"
fi

if [ ${#FAILED[@]} -gt 0 ]; then
  say "FAILED: ${FAILED[*]} (see $LOG)"
  exit 1
fi
say "all steps passed; logs and JSON under $OUT"
