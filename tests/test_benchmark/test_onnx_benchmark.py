"""tools/benchmark.py --onnx: ONNX Runtime against PyTorch on the demo and ResNet-50 backbones."""

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import fdconv_mm.benchmark.onnx_benchmark as onnx_benchmark
from fdconv_mm.benchmark.onnx_benchmark import format_onnx_report, onnx_table

TOOL = Path(__file__).parents[2] / 'tools' / 'benchmark.py'


def fake_backbone(name, image_size):
    rows = [
        dict(variant='baseline', params_m=2.5, onnx_mb=10.0, export_s=4.0, onnxruntime_ms=4.0,
             torch_ms=8.0, max_relative_difference=6e-7),
        dict(variant='FDConv', params_m=5.0, onnx_mb=30.0, export_s=40.0, onnxruntime_ms=12.0,
             torch_ms=20.0, max_relative_difference=2e-6),
    ]  # fmt: skip
    return dict(
        backbone=name, image_size=image_size, rows=rows, onnxruntime_ms_ratio=3.0,
        torch_ms_ratio=2.5,
    )  # fmt: skip


def fake_result():
    backbones = [fake_backbone('demo', 128), fake_backbone('resnet50', 512)]
    return dict(batch=1, threads=2, repeat=20, backbones=backbones)


def table_cells(table):
    return [[cell.strip() for cell in line.split('|')[1:-1]] for line in table.splitlines()[2:]]


def test_table_has_both_variants_and_their_ratios_per_backbone():
    table = onnx_table(fake_result())
    assert [cell.strip() for cell in table.splitlines()[0].split('|')[1:3]] == [
        'backbone',
        'variant',
    ]
    cells = table_cells(table)
    assert [row[:2] for row in cells] == [
        [name, variant]
        for name in ('demo', 'resnet50')
        for variant in ('baseline', 'FDConv', 'FDConv / baseline')
    ]
    baseline = ['2.50', '10.00', '4.00', '4.00', '8.00', '0.50', '6.0e-07']
    assert cells[0][3:] == cells[3][3:] == baseline
    assert cells[1][8:] == ['0.60', '2.0e-06']  # ONNX Runtime / PyTorch, difference
    ratios = ['2.00', '3.00', '10.00', '3.00', '2.50']  # params, MB, export, ORT, PyTorch
    assert cells[2][3:8] == cells[5][3:8] == ratios
    assert [row[2] for row in cells] == ['1 x 3 x 128^2'] * 3 + ['1 x 3 x 512^2'] * 3


def fake_variant(calls):
    """A stand-in for ``prepare_variant`` that records its arguments and exports nothing."""

    def prepare(config, options, image_size, batch, out, threads):
        calls.append((Path(out).name, config, options, image_size))
        return dict(
            module=lambda inputs: None, inputs=None, feed={},
            session=SimpleNamespace(run=lambda outputs, feed: None),
            params_m=1.0, onnx_mb=1.0, export_s=1.0, max_relative_difference=0.0,
        )  # fmt: skip

    return prepare


def run_without_export(tool, monkeypatch, *flags):
    """``tools/benchmark.py --onnx FLAGS --repeat 1 --warmup 0`` with :func:`fake_variant`;
    returns its calls."""
    calls = []
    monkeypatch.setattr(onnx_benchmark, 'prepare_variant', fake_variant(calls))
    argv = ['benchmark.py', '--onnx', *flags, '--repeat', '1', '--warmup', '0']
    monkeypatch.setattr(sys, 'argv', argv)
    tool.main()
    return calls


def test_tool_onnx_models_pick_the_backbones_and_their_sizes(tool, monkeypatch, capsys):
    calls = run_without_export(tool, monkeypatch, '--onnx-models', 'resnet50')
    assert [(name, size) for name, _, _, size in calls] == [
        ('resnet50_baseline.onnx', 512),
        ('resnet50_FDConv.onnx', 512),
    ]
    assert [config for _, config, _, _ in calls] == [
        'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py',
        'upernet/upernet_r50-fdconv_4xb4-160k_ade20k-512x512.py',
    ]
    assert {row[0] for row in table_cells(capsys.readouterr().out.split('\n\n')[-1])} == {
        'resnet50'
    }


def test_tool_onnx_runs_a_row_per_backbone_by_default(tool, monkeypatch, capsys):
    calls = run_without_export(tool, monkeypatch, '--image-size', '64')
    assert [(name, options, size) for name, _, options, size in calls] == [
        ('demo_baseline.onnx', {'model.backbone.conv_cfg': None}, 64),
        ('demo_FDConv.onnx', {}, 64),
        ('resnet50_baseline.onnx', {}, 64),
        ('resnet50_FDConv.onnx', {}, 64),
    ]
    cells = table_cells(capsys.readouterr().out.split('\n\n')[-1])
    assert [row[:3] for row in cells if row[1] == 'FDConv'] == [
        ['demo', 'FDConv', '1 x 3 x 64^2'],
        ['resnet50', 'FDConv', '1 x 3 x 64^2'],
    ]


@pytest.mark.slow  # exports two backbones (TorchScript: the fastest exporter) and runs them
def test_tool_onnx_flag_prints_the_table_and_writes_json(tool, tmp_path, monkeypatch, capsys):
    pytest.importorskip('onnxruntime')
    import fdconv_mm.deployment

    exports = []

    def traced_export(*args, **kwargs):
        exports.append(args[2])
        return export_onnx(*args, **kwargs, exporter='torchscript')

    export_onnx = fdconv_mm.deployment.export_onnx
    monkeypatch.setattr(fdconv_mm.deployment, 'export_onnx', traced_export)
    output = tmp_path / 'onnx.json'
    monkeypatch.setattr(
        sys, 'argv',
        ['benchmark.py', '--onnx', '--onnx-models', 'demo', '--image-size', '32', '--repeat', '1',
         '--warmup', '0', '--threads', '1', '--json', str(output)],
    )  # fmt: skip
    tool.main()
    text = capsys.readouterr().out
    assert [Path(path).name for path in exports] == ['demo_baseline.onnx', 'demo_FDConv.onnx']
    assert 'ONNX Runtime (CPU, 1 intra-op threads)' in text
    assert '| demo     | FDConv / baseline | 1 x 3 x 32^2' in text
    results = json.loads(output.read_text())
    assert set(results) == {'machine', 'onnx'}
    (demo,) = results['onnx']['backbones']
    baseline, fdconv = demo['rows']
    assert (baseline['variant'], fdconv['variant']) == ('baseline', 'FDConv')
    assert fdconv['params_m'] > baseline['params_m'] > 0
    for row in (baseline, fdconv):
        assert row['onnxruntime_ms'] > 0 and row['torch_ms'] > 0
        assert row['max_relative_difference'] < 1e-4
    ratio = fdconv['onnxruntime_ms'] / baseline['onnxruntime_ms']
    assert demo['onnxruntime_ms_ratio'] == pytest.approx(ratio)
    assert format_onnx_report(results).count('FDConv / baseline') == 1


@pytest.fixture
def tool():
    spec = importlib.util.spec_from_file_location('benchmark_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(tool, monkeypatch, *flags):
    monkeypatch.setattr(sys, 'argv', ['benchmark.py', *flags])
    with pytest.raises(SystemExit) as exit_info:
        tool.main()
    return exit_info.value.code


def test_tool_rejects_onnx_with_another_part(tool, monkeypatch, capsys):
    assert run_tool(tool, monkeypatch, '--onnx', '--models-only') == 2
    assert 'argument --models-only: not allowed with argument --onnx' in capsys.readouterr().err


def test_tool_runs_onnx_on_the_cpu_only(tool, monkeypatch):
    code = run_tool(tool, monkeypatch, '--onnx', '--device', 'cuda')
    assert code == 'benchmark.py: error: --onnx runs on the CPU, not --device cuda'


def test_tool_rejects_onnx_models_without_onnx(tool, monkeypatch, capsys):
    assert run_tool(tool, monkeypatch, '--onnx-models', 'demo') == 2
    assert '--onnx-models needs --onnx' in capsys.readouterr().err
