"""tools/benchmark.py --profile: operator times by kind (fdconv_mm/benchmark/profiling.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from fdconv_mm.benchmark.layer_benchmark import LayerShape
from fdconv_mm.benchmark.profiling import KIND_NAMES, op_kind, profile_layers, profile_table

TOOL = Path(__file__).parents[2] / 'tools' / 'benchmark.py'


@pytest.mark.parametrize(
    'name,kind',
    [
        ('aten::mkldnn_convolution', 'conv'),
        ('aten::convolution_backward', 'conv'),
        ('aten::_fft_c2r', 'fft'),
        ('aten::bmm', 'matmul'),
        ('aten::mm', 'matmul'),
        ('aten::index_select', 'gather'),
        ('aten::index_add_', 'gather'),
        ('aten::copy_', 'copy'),
        ('aten::native_batch_norm', 'norm'),
        ('aten::sum', 'reduce'),
        ('aten::addcmul_', 'pointwise'),
        ('aten::sigmoid_', 'pointwise'),
        ('aten::max_pool2d_with_indices', 'other'),
        ('aten::empty', 'other'),
    ],
)
def test_op_kind(name, kind):
    assert op_kind(name) == kind


def test_profile_layers_splits_fdconvs_time_into_kinds():
    shape = LayerShape(32, 32, 3, 12, 12)
    rows = profile_layers([shape], batch=2, runs=1)
    assert [row['step'] for row in rows] == ['inference', 'train']
    for row in rows:
        assert row['what'] == str(shape)
        assert row['fft'] > 0 and row['conv'] > 0 and row['conv2d_total'] > 0
        assert row['total'] == pytest.approx(sum(row[kind] for kind in KIND_NAMES))
    table = profile_table(rows).splitlines()
    assert len(table) == 4 and 'FDConv ms' in table[0]


@pytest.mark.slow  # profiles the six ResNet-50 layer shapes (about 15 s)
def test_tool_prints_the_layer_profile():
    run = subprocess.run(
        [sys.executable, str(TOOL), '--profile', '--layers-only', '--repeat', '1'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert run.stdout.count('| inference |') == 6 and run.stdout.count('| train ') == 6
