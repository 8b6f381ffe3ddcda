"""tools/benchmark.py --compile-time (fdconv_mm/benchmark/compile_benchmark.py)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fdconv_mm.benchmark import compile_benchmark
from fdconv_mm.benchmark.compile_benchmark import measure_compile
from fdconv_mm.benchmark.layer_benchmark import LayerShape

TOOL = Path(__file__).parents[2] / 'tools' / 'benchmark.py'


def test_measure_compile_times_the_compilation_and_both_steps():
    result = measure_compile(LayerShape(32, 32, 3, 8, 8), repeat=2, warmup=0, backend='aot_eager')
    assert result['shape'] == '32->32 k3 8x8' and result['backend'] == 'aot_eager'
    assert result['compile_s'] > 0 and result['eager_ms'] > 0 and result['compiled_ms'] > 0
    assert result['compiled_ratio'] == pytest.approx(result['compiled_ms'] / result['eager_ms'])


def test_tool_compile_time_prints_the_table_and_writes_json(tmp_path, monkeypatch, capsys):
    """The tool's flags reach measure_compile (stubbed: a real inductor compile takes 15 s)."""
    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        return dict(shape='s', batch=kwargs['batch'], backend='inductor', compile_s=1.5,
                    eager_ms=10.0, compiled_ms=8.0, compiled_ratio=0.8)  # fmt: skip

    monkeypatch.setattr(compile_benchmark, 'measure_compile', fake)
    spec = importlib.util.spec_from_file_location('benchmark_tool', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    output = tmp_path / 'compile.json'
    argv = ['benchmark.py', '--compile-time', '--batch', '3', '--repeat', '4']
    monkeypatch.setattr(sys, 'argv', [*argv, '--json', str(output)])
    tool.main()
    assert calls == [dict(batch=3, repeat=4, warmup=3)]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split('|')[1:-1] == [
        f' {name} ' for name in ('shape', 'batch', 'compile_s', 'eager_ms', 'compiled_ms')
    ] + [' compiled_ratio ']
    assert json.loads(output.read_text())['compiled_ratio'] == 0.8
