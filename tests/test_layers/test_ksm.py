"""Kernel spatial modulation (fdconv_mm/layers/ksm.py): the global and local heads' shapes
and neutral init, and the local head's logits in the kernel matrices' layout against the
plain Conv1d of docs/spec.md section 5."""

import pytest
import torch
import torch.nn.functional as F

from fdconv_mm.layers.ksm import (
    KernelSpatialModulationGlobal,
    KernelSpatialModulationLocal,
    local_logits,
    local_logits_backward,
)

KERNEL_SIZES = [(1, 1), (3, 3), (3, 1), (1, 3), (3, 5)]
# The heads start at N(0, 1e-6) weights: logits of O(1e-4) from O(1) channel means.
NEUTRAL_TOLERANCE = 1e-3


@pytest.mark.parametrize('kernel_size', KERNEL_SIZES, ids=str)
@pytest.mark.parametrize('num_groups', [1, 6])
@pytest.mark.parametrize('only_kernel_attention', [False, True])
def test_global_attention_shapes(kernel_size, num_groups, only_kernel_attention):
    ksm = KernelSpatialModulationGlobal(
        20, 12, kernel_size, num_groups, only_kernel_attention=only_kernel_attention
    )
    attentions = ksm(torch.randn(3, 20, 1, 1))
    with_heads = not only_kernel_attention
    expected = (
        (3, 20) if with_heads else None,
        (3, 12) if with_heads else None,
        (3, *kernel_size) if with_heads and kernel_size != (1, 1) else None,
        (3, num_groups) if num_groups > 1 else None,
    )
    assert tuple(None if a is None else tuple(a.shape) for a in attentions) == expected


@pytest.mark.parametrize('act', ['sigmoid', 'tanh'])
@pytest.mark.parametrize('training', [True, False])
def test_global_attentions_start_neutral(act, training):
    ksm = KernelSpatialModulationGlobal(20, 12, (3, 5), 8, act=act).train(training)
    attentions = ksm(torch.randn(4, 20, 1, 1))
    channel, filters, spatial, group = attentions
    for attention in (channel, filters, spatial):
        torch.testing.assert_close(
            attention, torch.ones_like(attention), rtol=0, atol=NEUTRAL_TOLERANCE
        )
    torch.testing.assert_close(group, torch.full_like(group, 1 / 8), rtol=0, atol=NEUTRAL_TOLERANCE)


@pytest.mark.parametrize('kernel_size', KERNEL_SIZES, ids=str)
@pytest.mark.parametrize('act', ['sigmoid', 'tanh'])
def test_local_attention_shape_and_neutral_init(kernel_size, act):
    ksm = KernelSpatialModulationLocal(20, 12, kernel_size, act=act)
    assert ksm.conv.weight.shape[:2] == (12 * kernel_size[0] * kernel_size[1], 1)
    attention = ksm(torch.randn(3, 20, 1, 1))
    assert attention.shape == (3, 12, 20, *kernel_size)
    torch.testing.assert_close(
        attention, torch.ones_like(attention), rtol=0, atol=NEUTRAL_TOLERANCE
    )


def conv1d_logits(normalized, weight, kernel_size):
    """The specification's layout: the Conv1d's output channel ``(co*kh + i)*kw + j`` at
    channel position ``ci``, rearranged to the kernel matrices' ``(co, i, ci, j)``."""
    batch, in_channels = normalized.shape
    kernel_h, kernel_w = kernel_size
    length = weight.shape[-1]
    logits = F.conv1d(normalized.view(batch, 1, in_channels), weight, padding=(length - 1) // 2)
    logits = logits.view(batch, -1, kernel_h, kernel_w, in_channels).permute(0, 1, 2, 4, 3)
    return logits.reshape(batch, -1, in_channels * kernel_w)


@pytest.mark.parametrize('kernel_size', KERNEL_SIZES, ids=str)
@pytest.mark.parametrize('length', [3, 5])
def test_local_logits_in_the_matrix_layout(kernel_size, length):
    kernel_h, kernel_w = kernel_size
    normalized = torch.randn(2, 7, dtype=torch.float64)
    weight = torch.randn(4 * kernel_h * kernel_w, 1, length, dtype=torch.float64)
    logits = local_logits(normalized, weight, kernel_w)
    assert logits.shape == (2, 4 * kernel_h, 7 * kernel_w)
    torch.testing.assert_close(logits, conv1d_logits(normalized, weight, kernel_size))


@pytest.mark.parametrize('kernel_size', KERNEL_SIZES, ids=str)
def test_local_module_is_the_conv1d_layout(kernel_size):
    """KSM-local's own forward (what :func:`reference.fdconv` multiplies the kernels with)
    against the activated plain Conv1d logits, times the spatial attention."""
    torch.manual_seed(0)
    ksm = KernelSpatialModulationLocal(9, 4, kernel_size).double()
    with torch.no_grad():
        ksm.conv.weight.normal_()
    pooled = torch.randn(2, 9, 1, 1, dtype=torch.float64)
    spatial = torch.rand(2, *kernel_size, dtype=torch.float64)
    logits = conv1d_logits(ksm.normalize(pooled), ksm.conv.weight, kernel_size)
    kernel_h, kernel_w = kernel_size
    logits = logits.view(2, 4, kernel_h, 9, kernel_w).permute(0, 1, 3, 2, 4)
    expected = torch.sigmoid(logits) * 2 * spatial.view(2, 1, 1, *kernel_size)
    torch.testing.assert_close(ksm(pooled, spatial), expected)


class LocalLogits(torch.autograd.Function):
    """:func:`local_logits` with :func:`local_logits_backward` as its backward."""

    @staticmethod
    def forward(ctx, normalized, weight, kernel_size):
        ctx.save_for_backward(normalized, weight)
        ctx.kernel_size = kernel_size
        return local_logits(normalized, weight, kernel_size)

    @staticmethod
    def backward(ctx, grad):
        normalized, weight = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:2])
        return (*local_logits_backward(grad, normalized, weight, ctx.kernel_size, needs), None)


@pytest.mark.parametrize('kernel_size', [(1, 1), (3, 3), (2, 3), (3, 1)], ids=str)
@pytest.mark.parametrize('needs', [(True, True), (True, False), (False, True)])
def test_local_logits_backward_gradcheck(kernel_size, needs):
    kernel_h, kernel_w = kernel_size
    normalized = torch.randn(2, 5, dtype=torch.float64, requires_grad=needs[0])
    weight = torch.randn(2 * kernel_h * kernel_w, 1, 3, dtype=torch.float64)
    weight.requires_grad_(needs[1])
    assert torch.autograd.gradcheck(
        lambda n, w: LocalLogits.apply(n, w, kernel_w), (normalized, weight)
    )
