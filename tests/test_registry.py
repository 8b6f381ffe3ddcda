"""Registration in mmcv/mmengine, the paper's quick start, and the layer without mm*."""

import subprocess
import sys

import pytest
import torch
from mmcv.cnn import build_conv_layer
from mmengine.registry import DefaultScope

import fdconv_mm
from fdconv_mm import FDConv


@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg'])
def test_build_conv_layer_under_each_scope(scope):
    cfg = dict(type='FDConv', kernel_num=64, use_fdconv_if_c_gt=16)
    if scope is None:
        layer = build_conv_layer(cfg, 64, 64, 3, padding=1)
    else:
        with DefaultScope.overwrite_default_scope(scope):
            layer = build_conv_layer(cfg, 64, 64, 3, padding=1)
    assert isinstance(layer, FDConv) and layer.fdconv_active and layer.kernel_num == 64
    assert layer(torch.randn(1, 64, 8, 8)).shape == (1, 64, 8, 8)


def test_misspelled_option_in_config_names_it():
    with pytest.raises(TypeError, match='kernel_nmu'):
        build_conv_layer(dict(type='FDConv', kernel_nmu=64), 64, 64, 3)


def test_version_check_names_what_to_install(monkeypatch):
    monkeypatch.setattr(fdconv_mm.registry.metadata, 'version', lambda name: '9.9.9')
    with pytest.raises(ImportError, match='install mmengine==0.10.7'):
        fdconv_mm.registry.check_versions()


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)


def test_paper_readme_quick_start_verbatim():
    snippet = '\n'.join(
        [
            'from fdconv import FDConv',
            'conv = FDConv(in_channels=64, out_channels=64, kernel_size=3, n_freq_groups=64)',
            'import torch',
            'print(tuple(conv(torch.randn(2, 64, 16, 16)).shape))',
        ]
    )
    result = run_python(snippet)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '(2, 64, 14, 14)'


def test_layer_needs_only_torch():
    code = '\n'.join(
        [
            'import sys',
            "for name in ('mmengine', 'mmcv', 'mmdet', 'mmseg'):",
            '    sys.modules[name] = None  # as if not installed',
            'import torch',
            'from fdconv_mm import FDConv',
            'y = FDConv(32, 32, 3, padding=1, kernel_num=8)(torch.randn(1, 32, 8, 8))',
            "mm = ('mmengine', 'mmcv', 'mmdet', 'mmseg')",
            "print(sorted(m for m in sys.modules if m.split('.')[0] in mm and sys.modules[m]))",
        ]
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'
