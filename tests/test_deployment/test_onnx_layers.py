"""FDConv's ONNX export path (fdconv_mm/layers/reference.py with real_fft.py, whose
transforms tests/test_layers/test_real_fft.py checks against torch.fft): the path against
the layer in eager mode, and exported files in ONNX Runtime against PyTorch, for layers,
the demo ResNet-18 backbone and a Swin FDConv backbone."""

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
import torch
from torch import Tensor

from fdconv_mm.deployment import export_model as export_onnx
from fdconv_mm.layers import FDConvLinear, is_exporting, reference
from fdconv_testing import LAYER_CASES, build_layer, randomize_attention, relative_error

ORT_TOLERANCE = 1e-4
EAGER_TOLERANCE = 1e-5

# The LAYER_CASES exported, with the batch each runs (one runs a single sample).
ONNX_CASES = {
    'k3-kernels-dominate': 2,
    'k3-no-fbm-no-bias': 2,
    'k1': 2,
    'k3x1-one-dimensional': 2,
    'k1-fbm-tanh': 2,
    'k3-stride2-fbm-groups-not-dividing': 2,
    'k3-dilation2-param-ratio2': 1,
    'spatial-weight-two-copies': 2,
    'k3-one-group-no-local': 2,
}


def make_layer(name: str) -> tuple:
    """The case's layer in eval mode, its heads random as a trained layer's, and an input."""
    conv = build_layer(name, torch.float32, as_trained=True).eval()
    height, width = LAYER_CASES[name].size
    return conv, torch.randn(ONNX_CASES[name], conv.in_channels, height, width)


def max_relative_difference(got: Sequence[np.ndarray], expected: Sequence[Tensor]) -> float:
    """Largest :func:`relative_error` over paired outputs (ONNX Runtime's, PyTorch's)."""
    assert len(got) == len(expected)
    assert all(out.shape == tuple(ref.shape) for out, ref in zip(got, expected))
    return max(relative_error(torch.from_numpy(out), ref) for out, ref in zip(got, expected))


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


@pytest.mark.parametrize('name', sorted(ONNX_CASES))
def test_export_path_equals_forward(name: str) -> None:
    conv, x = make_layer(name)
    with torch.no_grad():
        expected = conv(x)
        got = reference.fdconv(conv, x, reference.REAL_DFT)
    assert not is_exporting()
    relative = relative_error(got, expected)
    assert relative <= EAGER_TOLERANCE, relative


@pytest.mark.parametrize('name', sorted(ONNX_CASES))
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
        x = torch.randn(2, conv.in_channels, *size)
        with torch.no_grad():
            expected = conv(x)
        assert max_relative_difference(run(x), [expected]) <= ORT_TOLERANCE, size


def test_export_keeps_the_training_path_and_mode(tmp_path) -> None:
    conv, x = make_layer('k3-kernels-dominate')
    conv.train()
    export_onnx(conv, (x,), tmp_path / 'layer.onnx')
    assert conv.training
    out = conv(x)
    out.sum().backward()
    assert conv.dft_weight.grad is not None


def test_fdconv_linear_onnx(tmp_path, run_onnx) -> None:
    torch.manual_seed(0)
    linear = randomize_attention(FDConvLinear(32, 48, kernel_num=8), as_trained=True).eval()
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
    backbone = MODELS.build(config.model.backbone)
    backbone = randomize_attention(backbone, scale=0.2, as_trained=True).eval()
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
    swin = randomize_attention(swin, scale=0.2, as_trained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / 'swin.onnx'
    export_onnx(swin, (x,), path)
    with torch.no_grad():
        expected = swin(x)
    assert max_relative_difference(run_onnx(path)(x), expected) <= ORT_TOLERANCE
