import math

import pytest
import torch

from fdconv_mm.benchmark import (
    RESNET50_DETECTION_SHAPES,
    LayerShape,
    benchmark_layers,
    geometric_mean,
)


def test_the_issue_shapes():
    assert [tuple(vars(s).values()) for s in RESNET50_DETECTION_SHAPES] == [
        (64, 64, 3, 100, 152),
        (128, 128, 3, 50, 76),
        (256, 256, 3, 25, 38),
        (512, 512, 3, 13, 19),
        (256, 1024, 1, 25, 38),
        (2048, 512, 1, 13, 19),
    ]


def test_geometric_mean_of_one_value_is_the_value():
    assert geometric_mean([3.0]) == pytest.approx(3.0)


def test_benchmark_layers_measures_both_layers_on_small_shapes():
    shapes = (LayerShape(24, 32, 3, 6, 7), LayerShape(32, 24, 1, 5, 4))
    result = benchmark_layers(torch.device('cpu'), shapes, batch_size=2, repeat=1, warmup=0)
    assert len(result['rows']) == 2
    for row in result['rows']:
        for layer in ('Conv2d', 'FDConv'):
            assert row[f'{layer}_forward_ms'] > 0 and row[f'{layer}_train_ms'] > 0
            assert row[f'{layer}_train_peak_mb'] > 0
        assert row['train_ms_ratio'] == row['FDConv_train_ms'] / row['Conv2d_train_ms']
    ratios = [row['train_ms_ratio'] for row in result['rows']]
    assert result['train_ratio_geomean'] == pytest.approx(math.sqrt(ratios[0] * ratios[1]))
