"""Frequency band modulation (fdconv_mm/layers/fbm.py): the module's paths against
docs/spec.md section 6 as written, the pruned low-pass transforms against masked FFTs of
the whole spectrum, and ``BandModulation``'s hand-written backward."""

import pytest
import torch
import torch.nn.functional as F

from fdconv_mm.layers import FrequencyBandModulation
from fdconv_mm.layers import fbm as fbm_module
from fdconv_mm.layers.fbm import BandModulation, lowpass_features, lowpass_sum
from fdconv_mm.layers.frequency import lowpass_masks
from fdconv_testing import fbm_as_written, randomize_attention

SETTINGS = {
    'default': dict(),
    'tanh-low-band-weighted': dict(act='tanh', lowfreq_att=True),
    'softmax-groups': dict(act='softmax', spatial_group=4, k_list=(2, 4)),
    'sigmoid-groups-k5': dict(spatial_group=2, spatial_kernel=5, k_list=(8, 3)),
}


@pytest.mark.parametrize('size', [(9, 10), (6, 5), (11, 1)], ids=str)
@pytest.mark.parametrize('setting', sorted(SETTINGS))
def test_module_paths_follow_the_spec(setting, size):
    """``forward`` (``BandModulation``) and ``forward_as_specified`` against the spec, output
    and gradients, in float64."""
    fbm = randomize_attention(FrequencyBandModulation(8, **SETTINGS[setting])).double()
    x = torch.randn(2, 8, *size, dtype=torch.float64, requires_grad=True)
    params = list(fbm.parameters())
    expected = fbm_as_written(fbm, x)
    grad_output = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, [x, *params], grad_output)
    for forward in (fbm.forward, fbm.forward_as_specified):
        out = forward(x)
        torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)
        grads = torch.autograd.grad(out, [x, *params], grad_output)
        for grad, want in zip(grads, expected_grads):
            torch.testing.assert_close(grad, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize('k_list', [(2, 4, 8), (8, 2), (3,), (0.5, 2)])
@pytest.mark.parametrize('height,width', [(7, 9), (8, 8), (16, 5), (1, 4)])
def test_pruned_lowpass_transforms(height, width, k_list):
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    masks = lowpass_masks(height, width, k_list).to(x.dtype)
    spectrum = torch.fft.rfft2(x, norm='ortho')
    expected = [torch.fft.irfft2(spectrum * m, s=(height, width), norm='ortho') for m in masks]
    for low, want in zip(lowpass_features(x, k_list), expected):
        torch.testing.assert_close(low, want)
    maps = [torch.randn_like(x) for _ in k_list]
    want = sum(
        torch.fft.irfft2(torch.fft.rfft2(v, norm='ortho') * m, s=(height, width), norm='ortho')
        for v, m in zip(maps, masks)
    )
    torch.testing.assert_close(lowpass_sum(maps, k_list), want)


@pytest.mark.parametrize('act', ['sigmoid', 'tanh', 'softmax'])
@pytest.mark.parametrize('groups,weighted', [(1, 3), (1, 4), (2, 3)])
def test_band_modulation_gradcheck(groups, weighted, act):
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(groups * weighted, 4 // groups, 3, 3, dtype=torch.float64)
    bias = torch.randn(groups * weighted, dtype=torch.float64)
    settings = ((2, 4, 8)[: min(weighted, 3)], act, groups)
    assert torch.autograd.gradcheck(
        lambda *t: BandModulation.apply(*t, settings)[0],
        (x, weight.requires_grad_(), bias.requires_grad_()),
    )


@pytest.mark.parametrize('as_conv', [False, True], ids=['matmul-shifted-sums', 'conv'])
@pytest.mark.parametrize(
    'groups, kernel, size', [(1, 3, (9, 10)), (2, 5, (6, 5)), (4, 3, (11, 1)), (1, 5, (2, 3))]
)
def test_weight_convs_and_their_backward_are_conv2d(monkeypatch, as_conv, groups, kernel, size):
    """Both forms of FBM's stacked weight convs (the CPU's matmul and shifted sums, the conv
    of other devices and of torch.compile), forward and backward, against ``F.conv2d`` with
    autograd, in float64; maps smaller than the kernel included."""
    monkeypatch.setattr(fbm_module, '_weight_convs_as_conv', lambda x: as_conv)
    generator = torch.Generator().manual_seed(0)
    channels, maps = 8, 3

    def randn(*shape):
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    x, weight, bias = (
        randn(2, channels, *size),
        randn(groups * maps, channels // groups, kernel, kernel),
        randn(groups * maps),
    )
    leaves = [t.requires_grad_() for t in (x, weight, bias)]
    expected = F.conv2d(x, weight, bias, padding=kernel // 2, groups=groups)
    logits = fbm_module._weight_logits(x.detach(), weight.detach(), bias.detach(), groups)
    torch.testing.assert_close(logits, expected.view(2, groups, maps, *size))
    grad = randn(*logits.shape)
    expected_grads = torch.autograd.grad(expected, leaves, grad.view_as(expected))
    grads = fbm_module._weight_logits_backward(grad, x.detach(), weight.detach(), (True,) * 3)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)
