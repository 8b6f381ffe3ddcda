"""tools/benchmark.py --onnx: ONNX Runtime against PyTorch on the demo detector's backbone."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fdconv_mm.benchmark.onnx_benchmark import format_onnx_report, onnx_table

TOOL = Path(__file__).parents[2] / 'tools' / 'benchmark.py'


def fake_result():
    rows = [
        dict(variant='baseline', params_m=2.5, onnx_mb=10.0, export_s=4.0, onnxruntime_ms=4.0,
             torch_ms=8.0, max_relative_difference=6e-7),
        dict(variant='FDConv', params_m=5.0, onnx_mb=30.0, export_s=40.0, onnxruntime_ms=12.0,
             torch_ms=20.0, max_relative_difference=2e-6),
    ]  # fmt: skip
    return dict(
        image_size=128, batch=1, threads=2, repeat=20, rows=rows,
        onnxruntime_ms_ratio=3.0, torch_ms_ratio=2.5,
    )  # fmt: skip


def test_table_has_both_variants_and_their_ratios():
    lines = onnx_table(fake_result()).splitlines()
    assert lines[0].split('|')[1].strip() == 'backbone' and len(lines) == 5
    cells = [[cell.strip() for cell in line.split('|')[1:-1]] for line in lines[2:]]
    baseline = ['baseline', '2.50', '10.00', '4.00', '4.00', '8.00', '0.50', '6.0e-07']
    assert cells[0][:1] + cells[0][2:] == baseline
    assert cells[1][7:] == ['0.60', '2.0e-06']  # ONNX Runtime / PyTorch, difference
    ratios = ['2.00', '3.00', '10.00', '3.00', '2.50']  # params, MB, export, ORT, PyTorch
    assert cells[2][0] == 'FDConv / baseline' and cells[2][2:7] == ratios
    assert all(row[1] == '1 x 3 x 128^2' for row in cells)


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
        ['benchmark.py', '--onnx', '--image-size', '32', '--repeat', '1', '--warmup', '0',
         '--threads', '1', '--json', str(output)],
    )  # fmt: skip
    tool.main()
    text = capsys.readouterr().out
    assert [Path(path).name for path in exports] == [
        'baseline_backbone.onnx',
        'FDConv_backbone.onnx',
    ]
    assert 'ONNX Runtime (CPU, 1 intra-op threads)' in text
    assert '| FDConv / baseline | 1 x 3 x 32^2' in text
    results = json.loads(output.read_text())
    assert set(results) == {'machine', 'onnx'}
    baseline, fdconv = results['onnx']['rows']
    assert (baseline['variant'], fdconv['variant']) == ('baseline', 'FDConv')
    assert fdconv['params_m'] > baseline['params_m'] > 0
    for row in (baseline, fdconv):
        assert row['onnxruntime_ms'] > 0 and row['torch_ms'] > 0
        assert row['max_relative_difference'] < 1e-4
    ratio = fdconv['onnxruntime_ms'] / baseline['onnxruntime_ms']
    assert results['onnx']['onnxruntime_ms_ratio'] == pytest.approx(ratio)
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
