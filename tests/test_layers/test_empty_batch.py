"""A batch of no samples (an empty RoI batch) behaves as in nn.Conv2d."""

import pytest
import torch
from torch import nn

from fdconv_mm import FDConv
from fdconv_mm.layers import FDConvLinear
from fdconv_testing import LAYER_CASES, build_layer, conv2d_options, layer_input

# LAYER_CASES of each geometry: 1x1, 3x3 with FBM, stride 2, dilation with reflect
# padding, padding 'same'.
CASES = [
    'k1',
    'k3-maps-dominate',
    'stride2-kernels-dominate',
    'stride-dilation-reflect',
    'padding-same-no-bias',
]


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_empty_batch_gives_conv2d_shapes_and_zero_gradients(case, bias, mode):
    conv = build_layer(case, torch.float32, bias=bias)
    assert conv.fdconv_active and (conv.FBM is not None) == ('fbm' in LAYER_CASES[case].covers)
    plain = nn.Conv2d(**{**conv2d_options(case), 'bias': bias})
    getattr(conv, mode)()
    x = layer_input(case, batch=0, dtype=torch.float32).requires_grad_()
    plain_x = x.detach().clone().requires_grad_()
    out, expected = conv(x), plain(plain_x)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    out.sum().backward()
    expected.sum().backward()
    assert x.grad.shape == x.shape
    # nn.Conv2d gives its weight and bias zero gradients; FDConv gives every parameter one.
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in plain.parameters())
    for name, param in conv.named_parameters():
        assert param.grad is not None and torch.equal(param.grad, torch.zeros_like(param)), name
    with torch.no_grad():
        assert conv(x).shape == expected.shape


def test_empty_batch_leaves_the_batch_norm_statistics_alone():
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8).train()
    stats = {k: v.clone() for k, v in conv.KSM_Global.bn.state_dict().items()}
    conv(torch.randn(0, 32, 8, 8)).sum().backward()
    assert all(torch.equal(v, conv.KSM_Global.bn.state_dict()[k]) for k, v in stats.items())


def test_empty_batch_under_bf16_autocast():
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = conv(torch.randn(0, 32, 8, 8))
        expected = nn.Conv2d(32, 32, 3, padding=1)(torch.randn(0, 32, 8, 8))
    assert out.shape == (0, 32, 8, 8) and out.dtype == expected.dtype
    out.float().sum().backward()
    assert torch.equal(conv.dft_weight.grad, torch.zeros_like(conv.dft_weight))


def test_empty_token_batch_of_the_linear_layer():
    linear = FDConvLinear(32, 48, kernel_num=8).train()
    out = linear(torch.randn(0, 7, 32))
    assert out.shape == (0, 7, 48)
    out.sum().backward()
    assert torch.equal(linear.dft_weight.grad, torch.zeros_like(linear.dft_weight))
