"""The definition as it reads (fdconv_mm/layers/reference.py): its two transform backends,
``torch.fft`` and the real-arithmetic DFT of the ONNX export, agree step by step, and the
composition, gradients included, is docs/spec.md as written (``fdconv_as_written``)."""

import pytest
import torch

from fdconv_mm.layers import FrequencyBandModulation, reference
from fdconv_testing import (
    build_layer,
    fbm_as_written,
    fdconv_as_written,
    layer_input,
    randomize_attention,
)

TORCH_FFT, REAL_DFT = reference.TORCH_FFT, reference.REAL_DFT
# The real DFT's mixed-radix stages round differently from torch's FFT: measured 2e-15 at
# most on these sizes (relative to the largest kernel for the kernels).
BACKEND_TOLERANCE = dict(rtol=1e-12, atol=1e-12)


def stacked(spectrum: torch.Tensor) -> torch.Tensor:
    """A complex tensor as :data:`REAL_DFT` holds it: parts stacked first."""
    return torch.stack((spectrum.real, spectrum.imag))


@pytest.mark.parametrize('size', [(1, 1), (6, 4), (7, 9), (13, 1), (24, 10)], ids=str)
def test_backends_agree_on_irfft2(size):
    rows, cols = size
    spectrum = torch.randn(3, rows, cols // 2 + 1, dtype=torch.complex128)
    torch.testing.assert_close(
        REAL_DFT.irfft2(stacked(spectrum), size),
        TORCH_FFT.irfft2(spectrum, size),
        **BACKEND_TOLERANCE,
    )


@pytest.mark.parametrize('with_map', [True, False])
@pytest.mark.parametrize('copies', [1, 2])
def test_backends_agree_on_mix(copies, with_map):
    spectrum = torch.randn(copies, 6, 4, dtype=torch.complex128)
    group_map = torch.rand(3, copies, 6, 4, dtype=torch.float64) if with_map else None
    torch.testing.assert_close(
        REAL_DFT.mix(stacked(spectrum), group_map),
        stacked(TORCH_FFT.mix(spectrum, group_map)),
        **BACKEND_TOLERANCE,
    )


@pytest.mark.parametrize('k_list', [(2, 4, 8), (8, 3)])
@pytest.mark.parametrize('size', [(9, 10), (6, 5), (11, 1), (1, 7), (16, 16)], ids=str)
def test_backends_agree_on_fbm_bands(size, k_list):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    bands = TORCH_FFT.fbm_bands(x, k_list)
    assert bands.shape == (2, len(k_list) + 1, 3, *size)
    torch.testing.assert_close(REAL_DFT.fbm_bands(x, k_list), bands, **BACKEND_TOLERANCE)
    torch.testing.assert_close(bands.sum(1), x)  # the bands split x


@pytest.mark.parametrize(
    'case', ['k3-kernels-dominate', 'spatial-weight-two-copies', 'k3x5-stride-no-local']
)
@pytest.mark.parametrize('with_attention', [True, False])
def test_backends_agree_on_fourier_kernels(case, with_attention):
    conv = build_layer(case)
    groups = conv.kernel_num * conv.param_ratio
    attention = torch.rand(2, groups, dtype=torch.float64) if with_attention else None
    torch.testing.assert_close(
        reference.fourier_kernels(conv, attention, REAL_DFT),
        reference.fourier_kernels(conv, attention, TORCH_FFT),
        **BACKEND_TOLERANCE,
    )


@pytest.mark.parametrize('backend', ['TORCH_FFT', 'REAL_DFT'])
@pytest.mark.parametrize('lowfreq_att,spatial_group', [(False, 1), (True, 2)])
def test_fbm_is_the_spec(backend, lowfreq_att, spatial_group):
    fbm = FrequencyBandModulation(4, lowfreq_att=lowfreq_att, spatial_group=spatial_group)
    fbm = randomize_attention(fbm).double()
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    torch.testing.assert_close(
        reference.fbm(fbm, x, getattr(reference, backend)),
        fbm_as_written(fbm, x),
        rtol=1e-9,
        atol=1e-10,
    )


@pytest.mark.parametrize('case', ['two-copies-tanh-groups', 'k5x3-maps-dominate'])
def test_fdconv_trains_as_the_spec(case):
    """The composition is differentiable as written: with ``torch.fft``, its gradients in
    training mode are the spec's (the paths' outputs are tests/test_layers/test_paths.py)."""
    conv = build_layer(case).train()
    x = layer_input(case).requires_grad_()
    params = [p for p in conv.parameters() if p.requires_grad]
    out = reference.fdconv(conv, x, TORCH_FFT)
    expected = fdconv_as_written(conv, x)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)
    grad_output = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, *params], grad_output)
    expected_grads = torch.autograd.grad(expected, [x, *params], grad_output)
    for grad, want in zip(grads, expected_grads):
        torch.testing.assert_close(grad, want, rtol=1e-8, atol=1e-10)
