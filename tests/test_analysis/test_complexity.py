"""Parameter and FLOP counting: hand-computed FDConv layers, plain convs, FFTs, the tool."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fdconv_mm.analysis import (
    analyze_complexity,
    replace_fdconv_with_plain,
    resolve_config_path,
)
from fdconv_mm.layers import FDConv

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / 'tools' / 'analysis_tools' / 'get_flops.py'


def real_fft(points: int, transforms: int) -> int:
    """The documented cost of ``transforms`` real FFTs of ``points`` points, one op."""
    return round(transforms * 1.25 * points * math.log2(points))


def hand_fdconv_flops(cin, cout, k, batch, height, width, kernel_num, fbm):
    """FDConv's FLOPs from SPEC-fdconv.md sections 3-6 (stride 1, 'same' padding, P = 1)."""
    hidden = max(int(cin * 0.0625), 16)
    local_length = round(math.log2(cin) / 2 + 0.5) // 2 * 2 + 1
    pixels = height * width
    heads = cin + cout + kernel_num + (k * k if k > 1 else 0)
    flops = {
        'conv': batch * cout * cin * k * k * pixels,
        # fc, then the channel, filter, spatial and group heads, on (B, Cin, 1, 1)
        'ksm_global': batch * hidden * cin + batch * heads * hidden,
        'batch_norm': batch * hidden * 2,  # eval, affine: 2 per element
        'ksm_local': batch * cout * k * k * local_length * cin,  # Conv1d over Cin positions
        'layer_norm': batch * cin * 5,  # affine: 5 per element
        'kernel_fft': real_fft(cout * k * cin * k, batch),
        'spectrum_mixing': 2 * batch * cout * k * (cin * k // 2 + 1),
        # hr, ca, fa, and sa when k > 1
        'kernel_modulation': (4 if k > 1 else 3) * batch * cout * cin * k * k,
    }
    if fbm:
        bands = 3  # k_list (2, 4, 8): three weighted high bands and the low band
        flops['fbm_convs'] = bands * batch * cin * 9 * pixels
        flops['fbm_fft'] = real_fft(pixels, batch * cin) + real_fft(pixels, batch * cin * 4)
        flops['band_weighting'] = bands * batch * cin * pixels
    return flops


@pytest.mark.parametrize(
    'cin, cout, k, batch, height, width, fbm',
    [(32, 48, 3, 2, 12, 10, True), (24, 40, 1, 3, 7, 9, False)],
)
def test_fdconv_layer_matches_hand_count(cin, cout, k, batch, height, width, fbm):
    layer = FDConv(cin, cout, k, padding=k // 2, kernel_num=4).eval()
    assert (layer.FBM is not None) == fbm
    report = analyze_complexity(layer, (torch.rand(batch, cin, height, width),))
    expected = hand_fdconv_flops(cin, cout, k, batch, height, width, 4, fbm)

    assert report.flops() == sum(expected.values())
    breakdown = report.fdconv_breakdown()
    assert breakdown['conv'] == expected['conv']
    assert breakdown['kernel_fft'] == expected['kernel_fft']
    assert breakdown['fbm_fft'] == expected.get('fbm_fft', 0)
    assert breakdown['spectrum_mixing'] == expected['spectrum_mixing']
    assert breakdown['kernel_modulation'] == expected['kernel_modulation']
    assert breakdown['band_weighting'] == expected.get('band_weighting', 0)
    assert report.fdconv_extra_flops() == sum(expected.values()) - expected['conv']
    assert report.params[''] == sum(p.numel() for p in layer.parameters())


def test_plain_convs_get_the_standard_count():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        FDConv(8, 8, 3, padding=1),  # min(Cin, Cout) <= 16: a plain conv
        nn.Conv2d(8, 4, 1, stride=2),
    ).eval()
    report = analyze_complexity(model, (torch.rand(2, 3, 10, 12),))
    assert report.flops() == 2 * 120 * (8 * 3 * 9 + 8 * 8 * 9) + 2 * 30 * 4 * 8
    assert report.fdconv_layers == [] and report.elementwise == {}
    assert report.fdconv_extra_flops() == 0
    assert report.params[''] == sum(p.numel() for p in model.parameters())


def test_extra_work_is_the_difference_to_the_plain_model():
    model = nn.Sequential(
        FDConv(24, 32, 3, padding=1, kernel_num=8),
        nn.ReLU(),
        FDConv(32, 32, 1, kernel_num=8, param_ratio=2),
    ).eval()
    inputs = (torch.rand(1, 24, 16, 16),)
    report = analyze_complexity(model, inputs)
    assert len(report.fdconv_layers) == 2
    replace_fdconv_with_plain(model)
    plain = analyze_complexity(model, inputs)
    assert report.flops() - plain.flops() == report.fdconv_extra_flops() > 0
    assert report.params[''] - plain.params[''] == report.fdconv_params > 0


class FourierOps(nn.Module):
    def forward(self, x):
        spectrum = torch.fft.rfft2(x)
        return (
            torch.fft.irfft2(spectrum, s=x.shape[-2:]),
            torch.fft.rfftn(x, dim=(1, 3)),
            torch.fft.fft(x.to(torch.complex64), dim=1),
        )


def test_fft_cost_model():
    shape = (2, 3, 8, 6)
    report = analyze_complexity(FourierOps(), (torch.rand(shape),))
    expected = (
        real_fft(8 * 6, 2 * 3) * 2  # rfft2 and irfft2 over (H, W)
        + real_fft(3 * 6, 2 * 8)  # rfftn over dims 1 and 3
        + round(2 * 8 * 6 * 2.5 * 3 * math.log2(3))  # complex fft over dim 1
    )
    assert report.flops() == report.traced['']['fft'] == expected
    assert not any('fft' in op for op in report.unsupported_ops)


def test_resolve_config_path():
    path = resolve_config_path('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    assert Path(path).is_file()
    assert resolve_config_path('configs/x.py') == 'configs/x.py'


@pytest.mark.slow
@pytest.mark.parametrize(
    'config, library',
    [
        ('configs/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py', 'mmdet'),
        ('configs/demo/upernet_r18-fdconv_demo-shapes.py', 'mmseg'),
    ],
)
def test_tool_end_to_end(config, library):
    result = subprocess.run(
        [sys.executable, str(TOOL), config, '--shape', '128', '128', '--baseline'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f'Library: {library}' in out and 'input: (1, 3, 128, 128)' in out
    assert 'Params: ' in out and 'FLOPs: ' in out
    assert 'FDConv: 16 active layers (16 with FBM)' in out
    assert 'backbone' in out and 'Baseline (plain convs)' in out
    assert 'Not counted (no flop handle): ' in out
