"""The benchmark tool's machinery on tiny shapes (timings themselves are not asserted)."""

import torch

from fdconv_mm.benchmark import LayerShape, benchmark_layers, geometric_mean, layer_table


def test_geometric_mean():
    assert geometric_mean([1.0, 4.0]) == 2.0


def test_layer_benchmark_reports_every_shape_and_ratio():
    shapes = (LayerShape(32, 32, 3, 8, 8), LayerShape(32, 64, 1, 6, 6))
    result = benchmark_layers(torch.device('cpu'), shapes, repeat=1, warmup=0)
    assert len(result['rows']) == 2
    for row in result['rows']:
        assert row['train_ms_ratio'] > 0 and row['forward_ms_ratio'] > 0
        assert row['train_peak_mb_ratio'] > 0
    assert result['train_ratio_geomean'] > 0
    table = layer_table(result)
    assert table.count('\n') >= 3 and '32' in table
