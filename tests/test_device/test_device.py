"""FDConv on every device of the ``device`` fixture (CUDA only where present), against a
float64 computation on the CPU: the layer, FBM, kernel synthesis, a backbone step and a
checkpoint moved between devices; on CUDA also: no host synchronisation in ``forward``,
the frequency groups and band masks of the CPU, fp16 autocast on non-power-of-two FFTs.

``tools/gpu_check.sh`` runs the CUDA half (``pytest -m cuda``); the autocast and
``torch.compile`` tests of ``tests/test_layers/test_mixed_precision_and_compile.py`` take
the same fixtures.
"""

import copy
import io

import pytest
import torch

from fdconv_mm import FDConv
from fdconv_mm.layers import FrequencyBandModulation, band_masks
from fdconv_testing import LAYER_CASES, build_layer, layer_input, relative_error

FLOAT32_TOLERANCE = 1e-4  # relative to the largest value of the float64 result
# Gradients sum over every pixel and the attention heads' ones cancel: float32 keeps ~4 digits
GRAD_TOLERANCE = 1e-3
# LAYER_CASES run on each device: 3x3 with FBM on both sides of kernel_dominates, and 1x1.
CASES = ['k3-maps-dominate', 'k3-kernels-dominate', 'k1']
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
# Tests of CUDA alone: the ``device`` fixture's CUDA parameter only.
cuda_only = pytest.mark.parametrize(
    'device', [pytest.param('cuda', marks=[pytest.mark.cuda, NO_CUDA])], indirect=True
)


def build(options, randomize, device, channels=32):
    torch.manual_seed(0)
    conv = FDConv(channels, channels, kernel_num=8, **options)
    randomize(conv)
    return conv.to(device)


def gradients(module, x, grad_output):
    """Output and the gradients of the input and every parameter."""
    x = x.detach().requires_grad_()
    y = module(x)
    return y, torch.autograd.grad(y, [x, *module.parameters()], grad_output)


def check_against_float64(module, x, device):
    """``module`` on ``device`` in float32 against its float64 copy on the CPU."""
    reference = copy.deepcopy(module).cpu().double()
    grad_output = torch.randn_like(reference(x.double()))
    y64, grads64 = gradients(reference, x.double(), grad_output)
    y, grads = gradients(module, x.to(device), grad_output.float().to(device))
    assert y.device.type == device.type and y.dtype == torch.float32
    assert relative_error(y, y64) < FLOAT32_TOLERANCE
    names = ['input', *(name for name, _ in module.named_parameters())]
    for name, grad, grad64 in zip(names, grads, grads64):
        assert relative_error(grad, grad64) < GRAD_TOLERANCE, name


@pytest.mark.parametrize('case', CASES)
def test_layer_matches_float64_on_the_cpu(case, device):
    conv = build_layer(case, torch.float32).to(device)
    assert conv.fdconv_active and (conv.FBM is not None) == ('fbm' in LAYER_CASES[case].covers)
    check_against_float64(conv, layer_input(case, dtype=torch.float32), device)


def test_fbm_matches_float64_on_the_cpu(device):
    torch.manual_seed(0)
    fbm = FrequencyBandModulation(16, spatial_group=2, lowfreq_att=True)
    with torch.no_grad():
        for param in fbm.parameters():
            param.normal_(0, 0.5)
    x = torch.randn(2, 16, 11, 14)
    check_against_float64(fbm.to(device), x, device)
    fbm = fbm.to(device)
    spec = fbm.forward_as_specified(x.to(device))
    assert relative_error(fbm(x.to(device)), spec) < FLOAT32_TOLERANCE


def test_kernel_synthesis_matches_float64_on_the_cpu(randomize, device):
    conv = build(dict(kernel_size=3, padding=1), randomize, device)
    attention = torch.rand(2, conv.kernel_num * conv.param_ratio)
    kernels = conv.dynamic_kernel(attention.to(device))
    expected = copy.deepcopy(conv).cpu().double().dynamic_kernel(attention.double())
    assert kernels.shape == expected.shape == (2, 32, 32, 3, 3)
    assert kernels.device.type == device.type
    assert relative_error(kernels, expected) < FLOAT32_TOLERANCE


def test_backbone_training_step(device):
    from fdconv_mm.models.backbones import ResNetFDConv

    torch.manual_seed(0)
    backbone = ResNetFDConv(depth=18, base_channels=8, conv_cfg=dict(type='FDConv', kernel_num=4))
    reference = copy.deepcopy(backbone).double().train()
    backbone.to(device).train()
    x = torch.randn(2, 3, 32, 32)
    outs = backbone(x.to(device))
    expected = reference(x.double())
    for out, want in zip(outs, expected):
        assert relative_error(out, want) < 1e-3  # BatchNorm in training mode, four stages
    optimizer = torch.optim.SGD(backbone.parameters(), lr=0.1)
    sum(out.mean() for out in outs).backward()
    optimizer.step()
    assert all(p.device.type == device.type for p in backbone.parameters())
    assert all(torch.isfinite(p).all() for p in backbone.parameters())


@pytest.mark.parametrize('to_cpu', [True, False], ids=['saved-here-loaded-on-cpu', 'cpu-to-here'])
def test_checkpoint_round_trip_across_devices(to_cpu, randomize, device):
    source_device, target_device = (device, 'cpu') if to_cpu else ('cpu', device)
    source = build(dict(kernel_size=3, padding=1), randomize, source_device)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, map_location=target_device, weights_only=True)
    torch.manual_seed(1)
    target = FDConv(32, 32, 3, padding=1, kernel_num=8).to(target_device)
    target.load_state_dict(state)
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        assert b.device.type == torch.device(target_device).type, name
        assert torch.equal(a.cpu(), b.cpu()), name
    x = torch.randn(2, 32, 9, 8)
    with torch.no_grad():
        y_source = source.eval()(x.to(source_device))
        y_target = target.eval()(x.to(target_device))
    assert relative_error(y_target, y_source) < FLOAT32_TOLERANCE


@cuda_only
@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
def test_forward_does_not_synchronize_with_the_host(case, train, device):
    conv = build_layer(case, torch.float32).to(device).train(train)
    x = layer_input(case, dtype=torch.float32).to(device).requires_grad_(train)
    conv(x)  # warm: caches (groups, masks) filled, kernels chosen
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        conv(x)
    finally:
        torch.cuda.set_sync_debug_mode('default')


@cuda_only
def test_groups_and_masks_are_the_cpus(randomize, device):
    cpu_conv = build(dict(kernel_size=3, padding=1), randomize, 'cpu')
    moved = build(dict(kernel_size=3, padding=1), randomize, device)
    assert torch.equal(moved.frequency_groups.cpu(), cpu_conv.frequency_groups)
    with torch.device(device):  # built with CUDA as the default device
        torch.manual_seed(0)
        built_there = FDConv(32, 32, 3, padding=1, kernel_num=8)
    assert torch.equal(built_there.frequency_groups.cpu(), cpu_conv.frequency_groups)
    k_list = (2, 4, 8)
    for height, width in ((25, 38), (13, 19), (100, 152)):
        on_device = band_masks(height, width, k_list, device)
        assert on_device.device.type == 'cuda'
        assert torch.equal(on_device.cpu(), band_masks(height, width, k_list, None).cpu())


@cuda_only
def test_fp16_autocast_on_non_power_of_two_ffts(randomize, device):
    """cuFFT has no half-precision transform of sizes other than powers of two: the FFTs
    must stay in float32 under fp16 autocast (SPEC), a 3x3 FBM layer on 25 x 38 maps."""
    conv = build(dict(kernel_size=3, padding=1), randomize, device, channels=32)
    assert conv.FBM is not None
    x = torch.randn(2, 32, 25, 38, device=device)
    y_ref, grads_ref = gradients(conv, x, torch.ones(2, 32, 25, 38, device=device))
    with torch.autocast('cuda', dtype=torch.float16):
        y = conv(x.requires_grad_())
    assert y.dtype == torch.float16
    grads = torch.autograd.grad(y, [x, *conv.parameters()], torch.ones_like(y))
    assert relative_error(y, y_ref) < 1e-2
    assert all(torch.isfinite(grad).all() for grad in grads)
    assert relative_error(grads[0], grads_ref[0]) < 5e-2
