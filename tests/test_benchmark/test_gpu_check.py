import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]


@pytest.mark.slow  # collects the CUDA tests, times the layers and a backbone once (~50 s)
@pytest.mark.skipif(torch.cuda.is_available(), reason='the dry run is the check without a GPU')
def test_gpu_check_dry_run_without_a_gpu(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    run = subprocess.run(
        ['bash', str(ROOT / 'tools' / 'gpu_check.sh')], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert '== no GPU: a short dry run' in run.stdout
    assert 'Faster R-CNN: skipped' in run.stdout
    assert 'all steps passed' in run.stdout
    assert len(json.loads((tmp_path / 'layers.json').read_text())['layers']['rows']) == 6
    (row,) = json.loads((tmp_path / 'models.json').read_text())['models']
    assert row['part'] == 'backbone' and row['FDConv_train_ms'] > 0
    assert 'tests collected' in (tmp_path / 'gpu_check.log').read_text()
