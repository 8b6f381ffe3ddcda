"""The fast path's per-sample kernels (fdconv_mm/layers/kernel_synthesis.py): ``build``
against the definition's FDW (:func:`reference.fourier_kernels`) times each attention, and
the hand-written ``backward`` by gradcheck, in float64 on tiny layers."""

from typing import Dict, Optional

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from fdconv_mm import FDConv
from fdconv_mm.layers import reference
from fdconv_mm.layers.kernel_synthesis import WIDE_SPECTRUM, KernelInputs, irfft2_matrices

# name -> (FDConv options, which attentions the kernels get)
LAYERS = {
    'k3-every-attention': (dict(kernel_size=3, kernel_num=3), dict(filters=True, column=True)),
    'k3-tanh-spatial-only': (
        dict(kernel_size=3, kernel_num=3, ksm_local_act='tanh'),
        dict(filters=False, column=False),
    ),
    'k3-no-local': (
        dict(kernel_size=3, kernel_num=3, use_ksm_local=False),
        dict(filters=True, column=True),
    ),
    'k3-one-group-no-local-no-scales': (
        dict(kernel_size=3, kernel_num=1, use_ksm_local=False),
        dict(filters=False, column=False, spatial=False),
    ),
    'k1-two-copies': (
        dict(kernel_size=1, kernel_num=2, param_ratio=2),
        dict(filters=True, column=True),
    ),
    'k3x1-non-square': (dict(kernel_size=(3, 1), kernel_num=2), dict(filters=True, column=True)),
    'k1x3-spatial-weight': (
        dict(kernel_size=(1, 3), kernel_num=2, convert_param=False),
        dict(filters=False, column=True),
    ),
    # 342 -> 2: 514 spectrum columns, above WIDE_SPECTRUM (irfft2_matrices' own transposes)
    'k3-wide-spectrum': (
        dict(kernel_size=3, kernel_num=3, in_channels=342),
        dict(filters=True, column=True),
    ),
}
BATCH = 2


def tiny_layer(name: str) -> FDConv:
    """An active FDConv with 3 (or the case's ``in_channels``) -> 2 channels, in float64."""
    options = dict(LAYERS[name][0])
    torch.manual_seed(0)
    return FDConv(options.pop('in_channels', 3), 2, use_fdconv_if_c_gt=1, **options).double()


def random_inputs(conv: FDConv, name: str) -> KernelInputs:
    """Random kernel inputs of the layer's shapes; None where the layer (or the case) has no
    such factor."""
    _, scales = LAYERS[name]
    (kernel_h, kernel_w), cout, cin = conv.kernel_size, conv.out_channels, conv.in_channels
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator, dtype=torch.float64) + 0.5

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    groups = conv.kernel_num * conv.param_ratio
    local = conv.KSM_Local
    row_scale = None
    if scales.get('spatial', True):
        row_scale = rand(BATCH, cout if scales['filters'] else 1, kernel_h, 1, kernel_w)
    return KernelInputs(
        groups=conv.frequency_groups,
        spectrum=conv.fourier_weight().detach().clone(),
        group_attention=rand(BATCH, groups) / groups if groups > 1 else None,
        local_features=None if local is None else randn(BATCH, cin),
        local_weight=None if local is None else randn(*local.conv.weight.shape),
        row_scale=row_scale,
        column_scale=rand(BATCH, 1, 1, cin, 1) if scales['column'] else None,
    )


def kernels_as_defined(conv: FDConv, inputs: KernelInputs) -> Tensor:
    """FDW (:func:`reference.fourier_kernels`), times KSM-local's activation of the plain
    Conv1d logits (docs/spec.md section 5) and the row and column scales:
    (B or 1, Cout*kh, Cin*kw)."""
    (kernel_h, kernel_w), cout, cin = conv.kernel_size, conv.out_channels, conv.in_channels
    fourier = reference.fourier_kernels(conv, inputs.group_attention, reference.TORCH_FFT)
    kernels = fourier.view(-1, cout, kernel_h, cin, kernel_w)
    if inputs.local_features is not None:
        weight = inputs.local_weight
        logits = F.conv1d(
            inputs.local_features.unsqueeze(1), weight, padding=(weight.shape[-1] - 1) // 2
        )
        logits = logits.view(BATCH, cout, kernel_h, kernel_w, cin).transpose(-1, -2)
        if conv.KSM_Local.act == 'tanh':
            kernels = kernels * (1 + torch.tanh(logits))
        else:
            kernels = kernels * torch.sigmoid(logits) * conv.KSM_Local.att_multi
    for scale in (inputs.row_scale, inputs.column_scale):
        if scale is not None:
            kernels = kernels * scale
    return kernels.reshape(kernels.shape[0], *conv.matrix_size)


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_build_is_the_definitions_kernels_times_the_attentions(name):
    conv = tiny_layer(name)
    inputs = random_inputs(conv, name)
    kernels, cache = conv.synthesis.build(inputs)
    assert cache is None
    expected = kernels_as_defined(conv, inputs)
    assert kernels.shape == expected.shape
    torch.testing.assert_close(kernels, expected, rtol=1e-12, atol=1e-13)
    kept, cache = conv.synthesis.build(inputs, keep=True)
    assert cache is not None
    torch.testing.assert_close(kept, expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize('batch', [1, 3])
@pytest.mark.parametrize('columns', [WIDE_SPECTRUM - 1, WIDE_SPECTRUM + 3])
def test_irfft2_matrices_is_torchs_irfft2(batch, columns):
    spectra = torch.randn(batch, 6, columns, dtype=torch.complex128)
    size = (6, 2 * columns - 1)
    expected = torch.fft.irfft2(spectra, s=size)
    torch.testing.assert_close(irfft2_matrices(spectra, size), expected, rtol=1e-12, atol=1e-13)


class Synthesis(torch.autograd.Function):
    """``synthesis.build`` with ``synthesis.backward`` as its backward pass.

    ``apply(synthesis, groups, *tensors)``, ``tensors`` the differentiable fields of
    :class:`KernelInputs` (None where absent).
    """

    @staticmethod
    def forward(ctx, synthesis, groups, *tensors):
        ctx.synthesis = synthesis
        ctx.save_for_backward(groups, *tensors)
        kernels, _ = synthesis.build(KernelInputs(groups, *tensors))
        return kernels

    @staticmethod
    def backward(ctx, grad):
        inputs = KernelInputs(*ctx.saved_tensors)
        _, cache = ctx.synthesis.build(inputs, keep=True)
        needs = KernelInputs(False, *ctx.needs_input_grad[2:])
        grads = ctx.synthesis.backward(inputs, cache, grad.clone(), needs)
        assert grads.groups is None
        for field in KernelInputs._fields[1:]:  # a gradient exactly where one is needed
            wanted = getattr(needs, field) and getattr(inputs, field) is not None
            assert (getattr(grads, field) is not None) == wanted, field
        return (None, None, *grads[1:])


WANTED = {
    'everything': KernelInputs._fields[1:],
    'spectrum': ('spectrum',),  # frozen heads
    'attentions': KernelInputs._fields[2:],  # frozen weight
}


# (the layer without attentions has only its spectrum to differentiate; the wide layer's
# backward is the narrow layers' code)
GRADCHECKS = [
    (name, wanted)
    for name in sorted(LAYERS)
    for wanted in sorted(WANTED)
    if not (name == 'k3-one-group-no-local-no-scales' and wanted == 'attentions')
    and name != 'k3-wide-spectrum'  # thousands of numerical derivatives; the forward suffices
]


@pytest.mark.parametrize('name,wanted', GRADCHECKS)
def test_backward_gradcheck(name, wanted):
    conv = tiny_layer(name)
    inputs = random_inputs(conv, name)
    named: Dict[str, Optional[Tensor]] = inputs._asdict()
    differentiable = [f for f in WANTED[wanted] if named[f] is not None]
    assert differentiable
    for field in differentiable:
        named[field] = named[field].detach().clone().requires_grad_()

    def kernels(*tensors: Tensor) -> Tensor:
        fields = {**named, **dict(zip(differentiable, tensors))}
        return Synthesis.apply(conv.synthesis, *KernelInputs(**fields))

    assert torch.autograd.gradcheck(kernels, [named[f] for f in differentiable])
