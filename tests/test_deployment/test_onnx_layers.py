"""FDConv's ONNX export path (fdconv_mm/layers/onnx_export.py): its transforms against
torch.fft, the path against the layer in eager mode, and exported files in ONNX Runtime
against PyTorch, for layers, the demo ResNet-18 backbone and a Swin FDConv backbone."""

from pathlib import Path
from typing import Any, Callable, Dict, Sequence

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from fdconv_mm.layers import FDConv, FDConvLinear, export_onnx, is_exporting
from fdconv_mm.layers import onnx_export as ox
from fdconv_mm.layers.frequency import lowpass_masks

ORT_TOLERANCE = 1e-4
EAGER_TOLERANCE = 1e-5

# name -> (FDConv(Cin, Cout, k, **options), input (B, Cin, H, W))
LAYERS: Dict[str, Any] = {
    'k3-fbm': ((24, 32, 3), dict(padding=1), (2, 24, 11, 8)),
    'k3-no-fbm-no-bias': (
        (24, 32, 3),
        dict(padding=1, bias=False, use_fbm_if_k_in=()),
        (2, 24, 9, 9),
    ),
    'k1': ((32, 24, 1), dict(), (2, 32, 7, 10)),
    'k1-fbm-tanh': (
        (24, 32, 1),
        dict(use_fbm_if_k_in=(1,), ksm_global_act='tanh', ksm_local_act='tanh'),
        (2, 24, 8, 8),
    ),
    'k3-stride2-fbm-groups-not-dividing': (
        (24, 32, 3),
        dict(padding=1, stride=2, kernel_num=7, fbm_cfg=dict(lowfreq_att=True, spatial_group=2)),
        (2, 24, 13, 10),
    ),
    'k3-dilation2-param-ratio2': (
        (24, 20, 3),
        dict(padding=2, dilation=2, param_ratio=2, kernel_num=5),
        (1, 24, 10, 12),
    ),
    'k3-convert-param-false': (
        (24, 32, 3),
        dict(padding=1, convert_param=False, param_ratio=2, kernel_num=6),
        (2, 24, 7, 9),
    ),
    'k3-one-group-no-local': (
        (20, 24, 3),
        dict(padding=1, kernel_num=1, use_ksm_local=False),
        (2, 20, 6, 7),
    ),
}


def make_layer(name: str) -> tuple:
    shape, options, input_shape = LAYERS[name]
    torch.manual_seed(0)
    conv = randomize_attentions(FDConv(*shape, **options)).eval()
    assert conv.fdconv_active
    return conv, torch.randn(input_shape)


def randomize_attentions(model: nn.Module, seed: int = 0, scale: float = 0.5) -> nn.Module:
    """Give every active FDConv's KSM and FBM random parameters and BatchNorm statistics.

    The neutral init makes every attention about 1 (and FBM about the identity), which a
    wrong export of them would match; the spectral weight and the bias keep their values.
    A deep stack of layers needs a smaller ``scale``: with 0.5 the demo ResNet-18 turns
    so ill-conditioned that PyTorch's own float32 paths differ by 7e-5 (4e-5 from float64).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if not (isinstance(module, FDConv) and module.fdconv_active):
                continue
            for name, param in module.named_parameters():
                if name in ('dft_weight', 'weight', 'bias'):
                    continue
                noise = torch.randn(param.shape, generator=generator) * scale
                param.copy_(noise + (1.0 if name.endswith(('norm.weight', 'bn.weight')) else 0))
            bn = module.KSM_Global.bn
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=generator) + 0.5)
    return model


def max_relative_difference(got: Sequence[np.ndarray], expected: Sequence[Tensor]) -> float:
    """Largest ``max|got - expected| / max|expected|`` over paired outputs."""
    assert len(got) == len(expected)
    worst = 0.0
    for out, ref in zip(got, expected):
        ref = ref.detach().numpy()
        assert out.shape == ref.shape
        worst = max(worst, float(np.abs(out - ref).max() / np.abs(ref).max()))
    return worst


@pytest.fixture
def run_onnx() -> Callable[[Path], Callable[[Tensor], list]]:
    """``run_onnx(path)`` checks the file and returns ``run(x) -> outputs`` (ORT CPU)."""
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')

    def load(path: Path) -> Callable[[Tensor], list]:
        onnx.checker.check_model(str(path))
        session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x.numpy()})

    return load


@pytest.mark.parametrize('n', [1, 2, 5, 12, 17, 24, 96, 134, 768])
@pytest.mark.parametrize('columns', [1, 3])
@pytest.mark.parametrize('inverse', [False, True])
def test_complex_dft_matches_fft(n: int, columns: int, inverse: bool) -> None:
    x = torch.randn(2, 3, n, columns, dtype=torch.float64)
    signal = torch.complex(x[0], x[1])
    expected = torch.fft.ifft(signal, dim=-2) * n if inverse else torch.fft.fft(signal, dim=-2)
    got = ox.complex_dft(x, inverse=inverse)
    torch.testing.assert_close(torch.complex(got[0], got[1]), expected, rtol=0, atol=1e-12 * n)
    plan = ox.radix_plan(n)
    assert int(np.prod(plan)) == n
    assert all(r <= ox.MAX_RADIX or all(r % p for p in range(2, r)) for r in plan), plan


@pytest.mark.parametrize('size', [(1, 1), (3, 1), (4, 2), (6, 6), (5, 7), (96, 72), (48, 97)])
def test_irfft2_stacked_matches_torch(size: tuple) -> None:
    rows, cols = size
    spectrum = torch.randn(2, 2, rows, cols // 2 + 1, dtype=torch.float64)
    expected = torch.fft.irfft2(torch.complex(spectrum[0], spectrum[1]), s=size)
    torch.testing.assert_close(ox.irfft2_stacked(spectrum, size), expected, rtol=0, atol=1e-13)


def test_lowpass_counts_match_the_float32_masks() -> None:
    """The integer rule equals the spec's float32 comparison, also where 0.5 / k is not
    a float32 (k = 3, 1.5: the rounded threshold admits or refuses a frequency exactly at
    it) and at the admitted ties of k = 4, 8."""
    k_list = (2, 4, 8, 3, 1.5, 1, 16, 0.75)
    for n in list(range(1, 130)) + [333, 1333]:
        rows = lowpass_masks(n, 1, k_list)[:, :, 0].sum(1)
        columns = lowpass_masks(1, n, k_list)[:, 0, :].sum(1)
        for k, kept_rows, kept_columns in zip(k_list, rows.tolist(), columns.tolist()):
            if ox._threshold(k) > 0.5:  # every frequency passes
                assert (kept_rows, kept_columns) == (n, n // 2 + 1)
                continue
            count = ox.lowpass_count(n, k)
            assert (kept_rows, kept_columns) == (2 * count - 1, count), (n, k)


@pytest.mark.parametrize('size', [(16, 16), (13, 9), (1, 5), (64, 48)])
def test_lowpass_maps_match_masked_fft(size: tuple) -> None:
    k_list = (2, 4, 8)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    masks = lowpass_masks(*size, k_list).double()
    spectrum = torch.fft.rfft2(x, norm='ortho')[:, None] * masks[:, None]
    expected = torch.fft.irfft2(spectrum, s=size, norm='ortho')
    got = torch.stack(ox.lowpass_maps(x, k_list), dim=1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_export_path_equals_forward(name: str) -> None:
    conv, x = make_layer(name)
    with torch.no_grad():
        expected = conv(x)
        got = ox.fdconv_forward(conv, x)
    assert not is_exporting()
    relative = float((got - expected).abs().max() / expected.abs().max())
    assert relative <= EAGER_TOLERANCE, relative


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_layer_onnx_matches_pytorch(name: str, tmp_path, run_onnx) -> None:
    conv, x = make_layer(name)
    path = tmp_path / 'layer.onnx'
    export_onnx(conv, (x,), path)
    with torch.no_grad():
        expected = conv(x)
    assert max_relative_difference(run_onnx(path)(x), [expected]) <= ORT_TOLERANCE


@pytest.mark.parametrize('name', ['k3-stride2-fbm-groups-not-dividing', 'k1'])
def test_layer_torchscript_exporter(name: str, tmp_path, run_onnx) -> None:
    conv, x = make_layer(name)
    path = tmp_path / 'layer.onnx'
    export_onnx(conv, (x,), path, dynamo=False)
    with torch.no_grad():
        expected = conv(x)
    assert max_relative_difference(run_onnx(path)(x), [expected]) <= ORT_TOLERANCE
    with pytest.raises(ValueError, match='dynamic_hw'):
        export_onnx(conv, (x,), path, dynamo=False, dynamic_hw=True)


def test_dynamic_height_and_width(tmp_path, run_onnx) -> None:
    """One file at several sizes, odd ones too: FBM's bases come from the size."""
    conv, x = make_layer('k3-stride2-fbm-groups-not-dividing')
    path = tmp_path / 'dynamic.onnx'
    export_onnx(conv, (x,), path, dynamic_hw=True)
    run = run_onnx(path)
    for size in ((13, 10), (16, 16), (21, 7)):
        x = torch.randn(2, 24, *size)
        with torch.no_grad():
            expected = conv(x)
        assert max_relative_difference(run(x), [expected]) <= ORT_TOLERANCE, size


def test_export_keeps_the_training_path_and_mode(tmp_path) -> None:
    conv, x = make_layer('k3-fbm')
    conv.train()
    export_onnx(conv, (x,), tmp_path / 'layer.onnx')
    assert conv.training
    out = conv(x)
    out.sum().backward()
    assert conv.dft_weight.grad is not None


def test_fdconv_linear_onnx(tmp_path, run_onnx) -> None:
    torch.manual_seed(0)
    linear = randomize_attentions(FDConvLinear(32, 48, kernel_num=8)).eval()
    tokens = torch.randn(2, 20, 32)
    path = tmp_path / 'linear.onnx'
    export_onnx(linear, (tokens,), path)
    with torch.no_grad():
        expected = linear(tokens)
    assert max_relative_difference(run_onnx(path)(tokens), [expected]) <= ORT_TOLERANCE


def test_resnet18_demo_backbone_onnx(tmp_path, run_onnx) -> None:
    """The demo detector's backbone (16 active FDConvs, 9 with FBM), outputs of 4 stages."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    import fdconv_mm  # noqa: F401  (registers ResNetFDConv)

    config = Config.fromfile('configs/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py')
    torch.manual_seed(0)
    backbone = randomize_attentions(MODELS.build(config.model.backbone), scale=0.2).eval()
    x = torch.randn(1, 3, 64, 48)
    path = tmp_path / 'backbone.onnx'
    export_onnx(backbone, (x,), path)
    with torch.no_grad():
        expected = backbone(x)
    assert len(expected) == 4
    assert max_relative_difference(run_onnx(path)(x), expected) <= ORT_TOLERANCE


def test_swin_fdconv_onnx(tmp_path, run_onnx) -> None:
    from fdconv_mm.models.backbones import SwinTransformerFDConv

    torch.manual_seed(0)
    swin = SwinTransformerFDConv(
        embed_dims=32,
        depths=(1, 1),
        num_heads=(1, 2),
        out_indices=(0, 1),
        conv_cfg=dict(type='FDConv', kernel_num=8),
    )
    swin = randomize_attentions(swin, scale=0.2).eval()
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / 'swin.onnx'
    export_onnx(swin, (x,), path)
    with torch.no_grad():
        expected = swin(x)
    assert max_relative_difference(run_onnx(path)(x), expected) <= ORT_TOLERANCE
