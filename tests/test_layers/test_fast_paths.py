"""FDConv's optimized paths against a direct, sample-by-sample transcription of the spec.

The layer regroups FBM's bands, prunes its FFTs, builds the kernels in the ``irfft2``
layout, moves attentions between kernels and features, and rebuilds features and
kernels in the backward pass with hand-written gradients. Every
combination must compute SPEC-fdconv.md sections 3-6 as written: outputs and gradients
are compared in float64.
"""

import pytest
import torch
import torch.nn.functional as F

from fdconv_mm import FDConv
from fdconv_mm.layers.fbm import BandModulation, lowpass_features, lowpass_sum
from fdconv_mm.layers.frequency import lowpass_masks


def fbm_as_written(fbm, x):
    """SPEC section 6: masked inverse FFTs of the whole spectrum, one conv per band."""
    height, width = x.shape[-2:]
    spectrum = torch.fft.rfft2(x, norm='ortho')
    masks = lowpass_masks(height, width, fbm.k_list).to(x.dtype)
    lows = [x] + [
        torch.fft.irfft2(spectrum * mask, s=(height, width), norm='ortho') for mask in masks
    ]
    weights = []
    for conv in fbm.freq_weight_conv_list:
        logits = conv(x)
        if fbm.act == 'sigmoid':
            weights.append(torch.sigmoid(logits) * 2)
        elif fbm.act == 'tanh':
            weights.append(1 + torch.tanh(logits))
        else:
            weights.append(logits.softmax(dim=1) * logits.shape[1])
    groups = fbm.spatial_group

    def scaled(weight, band):
        grouped = band.view(band.shape[0], groups, -1, height, width)
        return (grouped * weight.unsqueeze(2)).view_as(band)

    out = sum(scaled(weights[i], lows[i] - lows[i + 1]) for i in range(len(fbm.k_list)))
    return out + (scaled(weights[-1], lows[-1]) if fbm.lowfreq_att else lows[-1])


def fdconv_as_written(conv, x):
    """SPEC sections 3-5, one sample at a time, attentions applied to the kernel."""
    k, cout, cin = conv.kernel_size[0], conv.out_channels, conv.in_channels
    pooled = x.mean(dim=(2, 3), keepdim=True)
    channel_att, filter_att, spatial_att, group_att = conv.KSM_Global(pooled)
    spectrum = torch.view_as_complex(conv.fourier_weight())
    copies, groups = conv.param_ratio, conv.frequency_groups
    outputs = []
    for b in range(x.shape[0]):
        mixed = 0
        for p in range(copies):
            attention = 1 if group_att is None else group_att[b, p * conv.kernel_num + groups]
            mixed = mixed + conv.alpha * spectrum[p] * attention
        matrix = torch.fft.irfft2(mixed, s=(cout * k, cin * k))
        kernel = matrix.view(cout, k, cin, k).permute(0, 2, 1, 3)
        local = conv.KSM_Local
        if local is not None:
            normalized = local.norm(pooled[b].view(1, 1, cin))
            length = local.conv.weight.shape[-1]
            logits = F.conv1d(normalized, local.conv.weight, padding=(length - 1) // 2)
            logits = logits.view(cout, k, k, cin).permute(0, 3, 1, 2)
            if local.act == 'tanh':
                kernel = kernel * (1 + torch.tanh(logits))
            else:
                kernel = kernel * torch.sigmoid(logits) * local.att_multi
        if spatial_att is not None:
            kernel = kernel * spatial_att[b].view(1, 1, k, k)
        if channel_att is not None:
            kernel = kernel * channel_att[b].view(1, cin, 1, 1)
        if filter_att is not None:
            kernel = kernel * filter_att[b].view(cout, 1, 1, 1)
        sample = x[b : b + 1]
        features = fbm_as_written(conv.FBM, sample) if conv.FBM is not None else sample
        if conv.padding_mode != 'zeros':
            features = F.pad(features, conv._reversed_padding_repeated_twice, conv.padding_mode)
            padding = 0
        else:
            padding = conv.padding
        outputs.append(F.conv2d(features, kernel, conv.bias, conv.stride, padding, conv.dilation))
    return torch.cat(outputs)


CASES = {
    # kernels outweigh the 6 x 5 maps: channel and filter attentions on the features
    'k3-kernels-dominate': (dict(in_channels=24, out_channels=20, kernel_size=3, padding=1), 6, 5),
    # maps outweigh the kernels: all attentions on the kernels
    'k3-maps-dominate': (
        dict(in_channels=24, out_channels=20, kernel_size=3, padding=1),
        14,
        13,
    ),
    'k1': (dict(in_channels=40, out_channels=24, kernel_size=1, kernel_num=8), 5, 7),
    'k1-large-map': (dict(in_channels=20, out_channels=18, kernel_size=1), 12, 11),
    'stride-dilation-reflect': (
        dict(
            in_channels=20,
            out_channels=22,
            kernel_size=3,
            stride=2,
            padding=2,
            dilation=2,
            padding_mode='reflect',
        ),
        9,
        8,
    ),
    'stride2-kernels-dominate': (
        dict(in_channels=32, out_channels=24, kernel_size=3, stride=2, padding=1),
        7,
        6,
    ),
    'padding-same-no-bias': (
        dict(in_channels=20, out_channels=20, kernel_size=3, padding='same', bias=False),
        5,
        6,
    ),
    'two-copies-tanh-groups': (
        dict(
            in_channels=24,
            out_channels=20,
            kernel_size=3,
            padding=1,
            kernel_num=4,
            param_ratio=2,
            ksm_local_act='tanh',
            ksm_global_act='tanh',
            fbm_cfg=dict(spatial_group=4, lowfreq_att=True, act='softmax'),
        ),
        7,
        6,
    ),
    'no-local-tanh-fbm': (
        dict(
            in_channels=20,
            out_channels=24,
            kernel_size=3,
            padding=1,
            use_ksm_local=False,
            fbm_cfg=dict(act='tanh', k_list=(2, 4)),
        ),
        6,
        6,
    ),
    'kernel-attention-only-one-group': (
        dict(
            in_channels=20,
            out_channels=20,
            kernel_size=3,
            padding=1,
            kernel_num=1,
            ksm_only_kernel_att=True,
        ),
        5,
        5,
    ),
    'spatial-weight': (
        dict(in_channels=24, out_channels=20, kernel_size=3, padding=1, convert_param=False),
        6,
        7,
    ),
}


def build(options, randomize):
    torch.manual_seed(0)
    conv = FDConv(**{'kernel_num': 16, **options}).double()
    randomize(conv)
    return conv


@pytest.mark.parametrize('mode', ['train', 'eval'])
@pytest.mark.parametrize('case', sorted(CASES))
def test_outputs_and_gradients_follow_the_spec(case, mode, randomize):
    options, height, width = CASES[case]
    conv = build(options, randomize)
    getattr(conv, mode)()
    x = torch.randn(3, conv.in_channels, height, width, dtype=torch.float64, requires_grad=True)
    params = [p for p in conv.parameters() if p.requires_grad]
    y = conv(x)
    grad_output = torch.randn_like(y)
    # (with one group and no other attention, KSM-global's trunk feeds nothing)
    grads = torch.autograd.grad(y, [x, *params], grad_output, allow_unused=True)
    if mode == 'train':  # the reference pass must see the same batch statistics
        conv.KSM_Global.bn.momentum = 0.0
    expected = fdconv_as_written(conv, x)
    expected_grads = torch.autograd.grad(expected, [x, *params], grad_output, allow_unused=True)
    torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-10)
    for grad, expected_grad in zip(grads, expected_grads):
        assert (grad is None) == (expected_grad is None)
        if grad is not None:
            torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-10)
    with torch.no_grad():  # the in-place, graph-free path
        torch.testing.assert_close(conv(x), y, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize('case', sorted(CASES))
def test_traced_forward_runs_the_specified_operators(case, randomize):
    options, height, width = CASES[case]
    conv = build(options, randomize).eval()
    x = torch.randn(2, conv.in_channels, height, width, dtype=torch.float64)
    with torch.no_grad():
        expected = conv(x)
        torch.testing.assert_close(conv.forward_as_specified(x), expected)
        traced = torch.jit.trace(conv, (x,), check_trace=False)
    graph = str(traced.inlined_graph)
    assert 'aten::fft_irfft2' in graph and 'PythonOp' not in graph
    assert ('aten::fft_rfft2' in graph) == (conv.FBM is not None)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), expected)


def test_frozen_layer_still_passes_the_input_gradient(randomize):
    conv = build(CASES['k3-kernels-dominate'][0], randomize)
    conv.requires_grad_(False)
    x = torch.randn(2, 24, 6, 5, dtype=torch.float64, requires_grad=True)
    y = conv(x)
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    (expected,) = torch.autograd.grad(fdconv_as_written(conv, x).square().sum(), x)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize('case', ['k3-maps-dominate', 'k1'])
def test_parameters_only_need_no_input_gradient(case, randomize):
    options, height, width = CASES[case]
    conv = build(options, randomize)
    x = torch.randn(2, conv.in_channels, height, width, dtype=torch.float64)
    params = [p for p in conv.parameters() if p.requires_grad]
    grads = torch.autograd.grad(conv(x).square().sum(), params)
    expected = torch.autograd.grad(fdconv_as_written(conv, x).square().sum(), params)
    for grad, want in zip(grads, expected):
        torch.testing.assert_close(grad, want)


@pytest.mark.parametrize('k_list', [(2, 4, 8), (8, 2), (3,)])
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
