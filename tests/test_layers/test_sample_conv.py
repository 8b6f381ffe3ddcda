"""The per-sample conv (fdconv_mm/layers/sample_conv.py): the grouped conv's weight layout
against a plain permutation and a conv per sample, and the hand-written backward passes of
``RebuildingSampleConv`` and ``KeepingSampleConv`` against finite differences, in float64
on tiny layers."""

from typing import List, Tuple

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from fdconv_mm import FDConv
from fdconv_mm.layers.kernel_synthesis import KernelInputs
from fdconv_mm.layers.sample_conv import (
    FeatureInputs,
    KeepingSampleConv,
    RebuildingSampleConv,
    SampleConvGeometry,
)

GEOMETRIES = {
    'k1': dict(kernel_size=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1)),
    'k3': dict(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)),
    'k3x1-stride': dict(kernel_size=(3, 1), stride=(2, 1), padding=(1, 0), dilation=(1, 1)),
    'k1x3-dilation': dict(kernel_size=(1, 3), stride=(1, 1), padding=(0, 2), dilation=(1, 2)),
    'k3x5': dict(kernel_size=(3, 5), stride=(1, 2), padding=(1, 2), dilation=(1, 1)),
}


@pytest.mark.parametrize('shared', [False, True], ids=['per-sample', 'shared'])
@pytest.mark.parametrize('name', sorted(GEOMETRIES))
def test_conv_weight_is_the_matrix_permuted(name, shared):
    geometry = SampleConvGeometry(**GEOMETRIES[name])
    kernel_h, kernel_w = geometry.kernel_size
    batch, cout, cin = 3, 4, 5
    matrices = torch.randn(1 if shared else batch, cout * kernel_h, cin * kernel_w)
    weight = geometry.conv_weight(matrices, batch)
    blocks = matrices.expand(batch, -1, -1).reshape(batch, cout, kernel_h, cin, kernel_w)
    expected = blocks.permute(0, 1, 3, 2, 4).reshape(batch * cout, cin, kernel_h, kernel_w)
    assert torch.equal(weight, expected)
    assert torch.equal(geometry.kernel_grad(weight, batch), matrices.expand(batch, -1, -1))
    features = torch.randn(batch, cin, 7, 6)
    bias = torch.randn(cout)
    out = geometry.run(features, matrices, bias)
    options = dict(stride=geometry.stride, padding=geometry.padding, dilation=geometry.dilation)
    kernels = expected.view(batch, cout, cin, kernel_h, kernel_w)
    per_sample = [F.conv2d(features[b : b + 1], kernels[b], bias, **options) for b in range(batch)]
    torch.testing.assert_close(out, torch.cat(per_sample))


@pytest.mark.parametrize('size', [(7, 6), (2, 3)], ids=['maps-7x6', 'maps-2x3'])
@pytest.mark.parametrize('name', sorted(GEOMETRIES))
def test_conv_and_backward_match_conv2d_per_sample(name, size):
    """Both convs (the grouped conv2d and the matmul of unfolded patches), each at a size
    that selects it, forward and backward, against ``F.conv2d`` per sample in float64."""
    geometry = SampleConvGeometry(**GEOMETRIES[name])
    kernel_h, kernel_w = geometry.kernel_size
    batch, cout, cin = 3, 8, 5
    generator = torch.Generator().manual_seed(0)
    matrices = torch.randn(batch, cout * kernel_h, cin * kernel_w, generator=generator)
    features = torch.randn(batch, cin, *size, generator=generator)
    bias = torch.randn(cout, generator=generator)
    leaves = [t.double().requires_grad_() for t in (features, matrices, bias)]
    features, matrices, bias = leaves
    matmul = geometry.uses_matmul(features, cout)
    assert matmul == (geometry.kernel_size == (1, 1) or size == (2, 3))
    with torch.no_grad():
        out = geometry.conv(features, matrices, bias)
    kernels = matrices.view(batch, cout, kernel_h, cin, kernel_w).transpose(2, 3)
    options = dict(stride=geometry.stride, padding=geometry.padding, dilation=geometry.dilation)
    expected = torch.cat(
        [F.conv2d(features[b : b + 1], kernels[b], bias, **options) for b in range(batch)]
    )
    torch.testing.assert_close(geometry.per_sample(out, batch), expected)
    grad_output = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    expected_grads = torch.autograd.grad(expected, leaves, grad_output)
    with torch.no_grad():
        operand = geometry.conv_operand(matrices, batch, matmul)
        grads = geometry.conv_backward(
            grad_output, features, operand, bias, matmul, (True, True, True)
        )
    for grad, want in zip(grads, expected_grads):
        torch.testing.assert_close(grad, want)


def test_matmul_conv_takes_one_kernel_for_the_batch():
    """Kernels shared by the batch ((1, Cout*kh, Cin*kw), FDConv without group attention)
    and a non-contiguous (channels_last) input, on the matmul conv."""
    geometry = SampleConvGeometry(**GEOMETRIES['k3'])
    matrices = torch.randn(1, 8 * 3, 5 * 3, dtype=torch.float64)
    features = torch.randn(3, 5, 2, 3, dtype=torch.float64).to(memory_format=torch.channels_last)
    assert geometry.uses_matmul(features, 8)
    kernel = matrices.view(8, 3, 5, 3).transpose(1, 2)
    torch.testing.assert_close(
        geometry.run(features, matrices, None), F.conv2d(features, kernel, padding=1)
    )


LAYERS = {
    'k3-fbm': dict(kernel_size=3, padding=1),
    'k1x3-stride-no-fbm': dict(kernel_size=(1, 3), stride=2, padding=(0, 1)),
}


def tiny_layer(name: str) -> FDConv:
    """An active FDConv with 3 -> 2 channels, in float64."""
    torch.manual_seed(0)
    return FDConv(3, 2, kernel_num=2, use_fdconv_if_c_gt=1, **LAYERS[name]).double()


def random_arguments(conv: FDConv) -> Tuple[Tensor, Tensor, FeatureInputs, KernelInputs]:
    """``x``, bias, feature and kernel inputs with every attention present."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator, dtype=torch.float64) + 0.5

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    (kernel_h, kernel_w), cout, cin = conv.kernel_size, conv.out_channels, conv.in_channels
    batch = 2
    fbm_weight, fbm_bias = (None, None)
    if conv.FBM is not None:
        fbm_weight, fbm_bias = (randn(*t.shape) for t in conv.FBM.stacked_conv())
    features = FeatureInputs(fbm_weight, fbm_bias, channel_scale=rand(batch, cin, 1, 1))
    kernels = KernelInputs(
        groups=conv.frequency_groups,
        spectrum=conv.fourier_weight().detach().clone(),
        group_attention=rand(batch, conv.kernel_num) / conv.kernel_num,
        local_features=randn(batch, cin),
        local_weight=randn(*conv.KSM_Local.conv.weight.shape),
        row_scale=rand(batch, cout, kernel_h, 1, kernel_w),
        column_scale=rand(batch, 1, 1, cin, 1),
    )
    return randn(batch, cin, 5, 4), randn(cout), features, kernels


def differentiable(tensors) -> List[Tensor]:
    """``tensors`` with each floating-point one a new leaf that requires a gradient (None
    and the int64 frequency groups as they are)."""
    return [
        t.detach().clone().requires_grad_() if t is not None and t.is_floating_point() else t
        for t in tensors
    ]


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_rebuilding_sample_conv_gradcheck(name):
    conv = tiny_layer(name)
    x, bias, features, kernels = random_arguments(conv)
    arguments = differentiable([x, bias, *features, *kernels])
    leaves = [t for t in arguments if t is not None and t.requires_grad]

    def run(*tensors: Tensor) -> Tensor:
        replaced = iter(tensors)
        args = [next(replaced) if t is not None and t.requires_grad else t for t in arguments]
        return RebuildingSampleConv.apply(
            conv.conv_features, conv.synthesis, conv.conv_geometry, *args
        )

    assert torch.autograd.gradcheck(run, leaves)


def directional_derivatives(function, leaves: List[Tensor], eps: float = 1e-6):
    """``<grad f . v, u>`` from one backward pass, and its central finite difference, for
    a random output weight ``v`` and a random direction ``u`` of each leaf."""
    generator = torch.Generator().manual_seed(1)
    out = function(*leaves)
    weight = torch.randn(out.shape, generator=generator, dtype=out.dtype)
    grads = torch.autograd.grad(out, leaves, weight)
    for leaf, grad in zip(leaves, grads):
        direction = torch.randn(leaf.shape, generator=generator, dtype=leaf.dtype)
        with torch.no_grad():
            shifted = []
            for sign in (1, -1):
                moved = [t + sign * eps * direction if t is leaf else t for t in leaves]
                shifted.append((function(*moved) * weight).sum())
        yield float((grad * direction).sum()), float((shifted[0] - shifted[1]) / (2 * eps))


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_keeping_sample_conv_gradients(name):
    """gradcheck runs a backward pass twice on one forward pass, which
    ``KeepingSampleConv`` refuses by design: each leaf's gradient is checked along a random
    direction instead, from the single backward pass."""
    conv = tiny_layer(name)
    x, bias, features, kernels = random_arguments(conv)
    kernel_args = differentiable(kernels)
    leaves = [t for t in [*differentiable([x, bias]), *kernel_args] if t.requires_grad]
    groups = kernel_args[0]

    def run(x: Tensor, bias: Tensor, *tensors: Tensor) -> Tensor:
        inputs = conv.conv_features(x, *features)
        return KeepingSampleConv.apply(
            conv.synthesis, conv.conv_geometry, inputs, bias, groups, *tensors
        )

    for analytic, numeric in directional_derivatives(run, leaves):
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-8)
