import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).parents[2] / 'tools' / 'benchmark.py'


@pytest.mark.slow  # times the six ResNet-50 layer shapes once (about 15 s)
def test_tool_prints_the_layer_table_and_writes_json(tmp_path):
    output = tmp_path / 'bench.json'
    run = subprocess.run(
        [sys.executable, str(TOOL), '--layers-only', '--repeat', '1', '--warmup', '0',
         '--threads', '1', '--json', str(output)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert 'Geometric mean of FDConv / Conv2d over 6 shapes' in run.stdout
    assert 'Peak memory: CPU peak' in run.stdout
    results = json.loads(output.read_text())
    assert len(results['layers']['rows']) == 6 and 'models' not in results
    assert results['machine']['torch_threads'] == 1


def test_tool_rejects_both_parts_off():
    run = subprocess.run(
        [sys.executable, str(TOOL), '--layers-only', '--models-only'],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2 and 'not allowed with argument' in run.stderr
