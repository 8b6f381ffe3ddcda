import math

import pytest
import torch
import torch.nn.functional as F

from fdconv_mm.benchmark import (
    RESNET50_DETECTION_SHAPES,
    FourierKernelFloor,
    LayerShape,
    benchmark_layers,
    format_report,
    geometric_mean,
    layer_table,
    machine_info,
)
from fdconv_mm.benchmark.layer_benchmark import LAYER_BUILDERS


def test_the_issue_shapes():
    assert [tuple(vars(s).values()) for s in RESNET50_DETECTION_SHAPES] == [
        (64, 64, 3, 100, 152),
        (128, 128, 3, 50, 76),
        (256, 256, 3, 25, 38),
        (512, 512, 3, 13, 19),
        (256, 1024, 1, 25, 38),
        (2048, 512, 1, 13, 19),
    ]


def test_geometric_mean():
    assert geometric_mean([3.0]) == pytest.approx(3.0)
    assert geometric_mean([1.0, 4.0]) == pytest.approx(2.0)


@pytest.mark.parametrize('kernel_size', [1, 3])
def test_floor_convolves_each_sample_with_the_irfft2_of_its_scaled_spectrum(kernel_size):
    torch.manual_seed(0)
    cin, cout, k = 3, 4, kernel_size
    floor = FourierKernelFloor(cin, cout, k).double()
    x = torch.randn(2, cin, 5, 6, dtype=torch.float64, requires_grad=True)
    out = floor(x)
    for b in range(2):
        spectrum = torch.complex(floor.spectrum[..., 0], floor.spectrum[..., 1])
        matrix = torch.fft.irfft2(spectrum * x[b].mean(), s=(cout * k, cin * k))
        expected = F.conv2d(x[b : b + 1], matrix.reshape(cout, cin, k, k), padding=k // 2)
        torch.testing.assert_close(out[b : b + 1], expected)
    out.sum().backward()
    assert floor.spectrum.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


def test_benchmark_layers_measures_every_layer_and_the_ratios():
    shapes = (LayerShape(24, 32, 3, 6, 7), LayerShape(32, 24, 1, 5, 4))
    result = benchmark_layers(torch.device('cpu'), shapes, batch_size=2, repeat=1, warmup=0)
    assert len(result['rows']) == 2
    for row in result['rows']:
        for layer in ('Conv2d', 'FDConv', 'floor'):
            assert row[f'{layer}_forward_ms'] > 0 and row[f'{layer}_train_ms'] > 0
            assert row[f'{layer}_train_peak_mb'] > 0
        assert row['train_ms_ratio'] == row['FDConv_train_ms'] / row['Conv2d_train_ms']
        assert row['floor_train_ratio'] == row['floor_train_ms'] / row['Conv2d_train_ms']
    ratios = [row['train_ms_ratio'] for row in result['rows']]
    assert result['train_ratio_geomean'] == pytest.approx(math.sqrt(ratios[0] * ratios[1]))
    floors = [row['floor_train_ratio'] for row in result['rows']]
    assert result['floor_train_ratio_geomean'] == pytest.approx(math.sqrt(floors[0] * floors[1]))
    assert len(layer_table(result).splitlines()) == 6


@pytest.mark.slow  # inductor compiles three layers, forward and training step (about 12 s)
def test_benchmark_layers_can_time_compiled_layers():
    shapes = (LayerShape(8, 8, 1, 5, 4),)
    result = benchmark_layers(
        torch.device('cpu'), shapes, batch_size=2, repeat=1, warmup=1, compile_layers=True
    )
    assert result['compiled']
    row = result['rows'][0]
    assert all(row[f'{layer}_train_ms'] > 0 for layer in ('Conv2d', 'FDConv', 'floor'))
    machine = machine_info(torch.device('cpu'))
    report = format_report(dict(machine=machine, memory_method='', layers=result))
    assert 'every layer torch.compile-d' in report


def test_benchmark_layers_can_time_the_speed_mode(monkeypatch):
    built = []
    build = LAYER_BUILDERS['FDConv']

    def recording_build(shape, **options):
        layer = build(shape, **options)
        built.append(layer)
        return layer

    monkeypatch.setitem(LAYER_BUILDERS, 'FDConv', recording_build)
    shapes = (LayerShape(24, 24, 3, 6, 7),)
    result = benchmark_layers(
        torch.device('cpu'), shapes, repeat=1, warmup=0, fdconv_options={'keep_for_backward': True}
    )
    assert [layer.keep_for_backward for layer in built] == [True]
    assert result['fdconv_options'] == {'keep_for_backward': True}
    machine = machine_info(torch.device('cpu'))
    report = format_report(dict(machine=machine, memory_method='', layers=result))
    assert "FDConv options {'keep_for_backward': True}" in report


def test_suite_puts_the_speed_mode_into_the_model_backbones(monkeypatch):
    from fdconv_mm.benchmark import model_benchmark, suite

    seen = {}

    def fake_benchmark_models(device, **kwargs):
        seen.update(kwargs)
        return {}

    monkeypatch.setattr(model_benchmark, 'benchmark_models', fake_benchmark_models)
    suite.run_suite(torch.device('cpu'), layers=False, keep_for_backward=True)
    assert seen['fdconv_options'] == {'model.backbone.conv_cfg.keep_for_backward': True}


def test_full_resolution_shapes_are_the_800x1216_strides():
    from fdconv_mm.benchmark.layer_benchmark import RESNET50_DETECTION_SHAPES_FULL

    strides = [4, 8, 16, 32, 16, 32]
    assert [(s.height, s.width) for s in RESNET50_DETECTION_SHAPES_FULL] == [
        (-(-800 // stride), -(-1216 // stride)) for stride in strides
    ]
    channels = [(s.in_channels, s.out_channels, s.kernel_size) for s in RESNET50_DETECTION_SHAPES]
    assert channels == [
        (s.in_channels, s.out_channels, s.kernel_size) for s in RESNET50_DETECTION_SHAPES_FULL
    ]


def test_suite_passes_the_layer_batch_and_shapes(monkeypatch):
    from fdconv_mm.benchmark import suite
    from fdconv_mm.benchmark.layer_benchmark import RESNET50_DETECTION_SHAPES_FULL

    seen = {}

    def fake_benchmark_layers(device, shapes, **kwargs):
        seen.update(kwargs, shapes=shapes)
        return {}

    monkeypatch.setattr(suite, 'benchmark_layers', fake_benchmark_layers)
    suite.run_suite(torch.device('cpu'), models=False, layer_batch=8, full_resolution=True)
    assert seen['batch_size'] == 8 and seen['shapes'] == RESNET50_DETECTION_SHAPES_FULL
