"""An in-place op may follow FDConv (and FBM) in training, as it may follow nn.Conv2d.

FDConv's output comes from one of two paths chosen by ``kernel_dominates(H, W)``: below
the threshold the filter attention scales the output (a new tensor), from it on the
per-sample conv's output is returned as it is. Both sides are checked.
"""

import pytest
import torch
from torch import nn

from fdconv_mm import FDConv
from fdconv_mm.layers.fbm import FrequencyBandModulation

CHANNELS = 32


def threshold_sizes(kernel_size):
    """The largest map below the threshold and the smallest at it, for CHANNELS -> CHANNELS.

    ``kernel_dominates`` is ``Cout * Cin * k^2 > (Cin + Cout) * H * W``: with H = 4 the
    threshold is ``W = Cin * k^2 / 8`` (k = 1: 4 x 4, k = 3: 4 x 36).
    """
    width = CHANNELS * kernel_size**2 // 8
    return (4, width - 1), (4, width)


def relu_inplace(out, x):
    return nn.ReLU(inplace=True)(out)


def relu(out, x):
    return nn.ReLU()(out)


def add_inplace(out, x):
    out += x
    return out


def add(out, x):
    return out + x


def mul_inplace(out, x):
    return out.mul_(x)


def mul(out, x):
    return out * x


OPS = {
    'relu': (relu_inplace, relu),
    'add': (add_inplace, add),
    'mul': (mul_inplace, mul),
}


def output_and_grads(conv, x, weight, op):
    x = x.clone().requires_grad_()
    out = op(conv(x), x)
    params = [p for p in conv.parameters() if p.requires_grad]
    grads = torch.autograd.grad((out * weight).sum(), [x, *params])
    return out.detach(), grads


@pytest.mark.parametrize('kernel_size', [1, 3])
@pytest.mark.parametrize('side', ['below', 'at'])
@pytest.mark.parametrize('op', sorted(OPS))
@pytest.mark.parametrize('keep', [False, True], ids=['rebuild', 'keep_for_backward'])
def test_inplace_op_after_the_layer_trains_like_the_out_of_place_op(
    kernel_size, side, op, keep, randomize
):
    torch.manual_seed(0)
    conv = FDConv(
        CHANNELS,
        CHANNELS,
        kernel_size,
        padding=kernel_size // 2,
        kernel_num=8,
        keep_for_backward=keep,
    )
    randomize(conv)
    conv.train()
    below, at = threshold_sizes(kernel_size)
    assert conv.kernel_dominates(*below) and not conv.kernel_dominates(*at)
    size = below if side == 'below' else at
    x = torch.randn(2, CHANNELS, *size)
    weight = torch.randn(2, CHANNELS, *size)
    inplace, out_of_place = OPS[op]
    expected, expected_grads = output_and_grads(conv, x, weight, out_of_place)
    actual, actual_grads = output_and_grads(conv, x, weight, inplace)
    torch.testing.assert_close(actual, expected)
    for actual_grad, expected_grad in zip(actual_grads, expected_grads):
        torch.testing.assert_close(actual_grad, expected_grad)


def test_the_issue_reproduction_trains():
    torch.manual_seed(0)
    model = nn.Sequential(FDConv(64, 64, 3, padding=1), nn.ReLU(inplace=True)).train()
    x = torch.randn(2, 64, 64, 64, requires_grad=True)
    model(x).sum().backward()
    assert x.grad.shape == x.shape and model[0].dft_weight.grad.abs().sum() > 0


def test_inplace_add_after_a_frozen_layer_without_input_gradient(randomize):
    """Nothing of the layer needs a gradient: its output is built without a graph."""
    conv = FDConv(CHANNELS, CHANNELS, 3, padding=1, kernel_num=8).requires_grad_(False)
    randomize(conv)
    x = torch.randn(2, CHANNELS, 12, 12)
    residual = torch.randn(2, CHANNELS, 12, 12, requires_grad=True)
    out = conv(x)
    out += residual
    (out * 3).sum().backward()
    torch.testing.assert_close(residual.grad, torch.full_like(residual, 3.0))


def test_inplace_op_after_fbm(randomize):
    torch.manual_seed(0)
    fbm = FrequencyBandModulation(CHANNELS, spatial_group=4)
    randomize(fbm)
    x = torch.randn(2, CHANNELS, 10, 12)
    weight = torch.randn(2, CHANNELS, 10, 12)
    expected, expected_grads = output_and_grads(fbm, x, weight, relu)
    actual, actual_grads = output_and_grads(fbm, x, weight, relu_inplace)
    torch.testing.assert_close(actual, expected)
    for actual_grad, expected_grad in zip(actual_grads, expected_grads):
        torch.testing.assert_close(actual_grad, expected_grad)
