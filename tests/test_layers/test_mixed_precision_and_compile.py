"""FDConv under autocast (bf16 on the CPU, bf16 and fp16 on CUDA) and under ``torch.compile``,
on every device of the ``device`` / ``autocast_device`` fixtures (CUDA only where present).

Autocast: the FFTs and the kernel synthesis run in float32 whatever the autocast dtype;
the per-sample conv runs in it, so the output is bf16 and the parameter gradients are
float32. ``torch.compile``: FDConv traces as one graph, forward and backward (the
backward of its custom autograd functions included), and the compiled layer matches
eager within 1e-4 (relative to the largest value); inductor leaves the complex FFT ops
to their eager kernels.
"""

import shutil
import warnings

import pytest
import torch

from fdconv_mm import FDConv
from fdconv_testing import LAYER_CASES, build_layer, layer_input, relative_error

BF16_TOLERANCE = 3e-2  # bf16 keeps 8 bits of mantissa; the kernels are summed over Cin*k*k

# LAYER_CASES run under autocast: 3x3 with FBM on both sides of kernel_dominates (the
# kernels-dominate one with three distinct bands), with stride 2, and 1x1.
CASES = ['k3-maps-dominate', 'k3-kernels-dominate', 'stride2-kernels-dominate', 'k1']


# torch 2.13's inductor on the CPU: the compiled lean layer's input gradient is wrong where
# the layer has FBM (0.1 to 0.3 relative; the output, the parameters' gradients,
# keep_for_backward=True and aot_eager are right). RebuildingSampleConv's backward
# rebuilds the FBM features under torch.func.vjp: an autograd function whose backward
# takes the vjp of FrequencyBandModulation.modulate reproduces it, FBM compiled alone does
# not.
def build(case, device='cpu'):
    return build_layer(case, torch.float32).to(device)


def random_input(case, device='cpu', requires_grad=False):
    """``layer_input(case)`` in float32 on ``device``."""
    x = layer_input(case, dtype=torch.float32).to(device)
    return x.requires_grad_(requires_grad)


@pytest.mark.parametrize('case', CASES)
def test_autocast_trains_the_layer(case, autocast_device):
    device, dtype = autocast_device
    conv = build(case, device=device)
    assert conv.fdconv_active and (conv.FBM is not None) == ('fbm' in LAYER_CASES[case].covers)
    x = random_input(case).to(device)
    y_ref = conv(x.requires_grad_())
    grad_output = torch.randn_like(y_ref)
    ref_grads = torch.autograd.grad(y_ref, [x, *conv.parameters()], grad_output)
    with torch.autocast(device.type, dtype=dtype):
        y = conv(x)
    assert y.dtype == dtype
    grads = torch.autograd.grad(y, [x, *conv.parameters()], grad_output.to(dtype))
    assert relative_error(y, y_ref) < BF16_TOLERANCE
    for (name, param), grad in zip(conv.named_parameters(), grads[1:]):
        assert grad.dtype == param.dtype == torch.float32, name
        assert torch.isfinite(grad).all(), name
    assert grads[0].dtype == torch.float32 and torch.isfinite(grads[0]).all()
    assert relative_error(grads[0], ref_grads[0]) < 0.1
    # the Fourier weight's gradient goes through the kernels only: bf16 touches the conv
    index = [n for n, _ in conv.named_parameters()].index('dft_weight') + 1
    assert relative_error(grads[index], ref_grads[index]) < 0.1


def test_autocast_trains_a_resnet_backbone(autocast_device):
    from fdconv_mm.models.backbones import ResNetFDConv

    device, dtype = autocast_device
    torch.manual_seed(0)
    backbone = ResNetFDConv(depth=18, base_channels=16, conv_cfg=dict(type='FDConv', kernel_num=8))
    backbone.to(device).train()
    assert sum(isinstance(m, FDConv) and m.fdconv_active for m in backbone.modules()) > 0
    x = torch.randn(2, 3, 64, 64).to(device)
    with torch.autocast(device.type, dtype=dtype):
        outs = backbone(x)
    assert all(out.dtype == dtype for out in outs)
    sum(out.float().square().mean() for out in outs).backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def test_compiled_forward_has_no_graph_break(device):
    for case in ('k3-kernels-dominate', 'k1'):
        conv = build(case, device=device)
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(conv)(random_input(case, device=device))
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1


def uses_inductor(device):
    """Inductor runs on CUDA, and on the CPU where a C++ compiler builds its code."""
    compilers = ('c++', 'g++', 'clang++')
    return device.type == 'cuda' or any(shutil.which(compiler) for compiler in compilers)


def compile_layer(conv, device):
    """Inductor; on the CPU ``aot_eager`` on a machine without the C++ compiler inductor's
    CPU code needs (any other inductor failure fails the test); on CUDA always inductor."""
    torch.compiler.reset()
    if uses_inductor(device):
        return torch.compile(conv)
    warnings.warn('no C++ compiler: checking with aot_eager instead of inductor', stacklevel=2)
    return torch.compile(conv, backend='aot_eager')


# 3x3 with and without FBM. (The 1x1 cases' KSM_Global.fc.weight gradient, through a
# batch-of-2 BatchNorm, is 1e-4 to 6e-4 off float64 in float32 eager already, so a
# compiled layer's reordered float32 sums cannot match it within 1e-4: the 1x1 layer is
# compiled below, its output and input gradient compared.)
@pytest.mark.slow  # inductor compiles forward and backward: 10 to 25 s per layer here
@pytest.mark.parametrize('case', ['k3-kernels-dominate', 'k3-no-fbm-no-bias'])
def test_compiled_layer_matches_eager(case, device):
    conv = build(case, device=device)
    x = random_input(case, device=device, requires_grad=True)
    expected = conv(x)
    grad_output = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, [x, *conv.parameters()], grad_output)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*complex operators.*')
        warnings.filterwarnings('ignore', message='.*lru_cache.*')
        y = compile_layer(conv, device)(x)
    grads = torch.autograd.grad(y, [x, *conv.parameters()], grad_output)
    assert relative_error(y, expected) < 1e-4
    for (name, _), grad, want in zip([('x', x), *conv.named_parameters()], grads, expected_grads):
        assert relative_error(grad, want) < 1e-4, name


@pytest.mark.slow  # one compilation per input size
@pytest.mark.parametrize('case', ['k1', 'k3-maps-dominate'])
def test_compiled_layer_follows_new_input_sizes(case, device):
    """A detector's images change size: from the second size on, dynamo recompiles the
    layer with symbolic shapes, which must still build and match eager."""
    conv = build(case, device=device)
    compiled = compile_layer(conv, device)
    for size in ((9, 7), (12, 10), (8, 11)):
        x = torch.randn(2, conv.in_channels, *size, device=device, requires_grad=True)
        expected = conv(x)
        (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='.*complex operators.*')
            y = compiled(x)
        (grad,) = torch.autograd.grad(y.square().sum(), x)
        assert relative_error(y, expected) < 1e-4, size
        assert relative_error(grad, expected_grad) < 1e-4, size
