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

BF16_TOLERANCE = 3e-2  # bf16 keeps 8 bits of mantissa; the kernels are summed over Cin*k*k


def relative_error(actual, expected):
    scale = expected.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    return ((actual.float() - expected.float()).abs().max() / scale).item()


LAYERS = {
    'k3-fbm-maps-dominate': (dict(kernel_size=3, padding=1), (14, 12)),
    # 11 x 12: the kernels still outweigh the map, and all three bands differ
    'k3-fbm-kernels-dominate': (dict(kernel_size=3, padding=1), (11, 12)),
    'k3-fbm-stride2': (dict(kernel_size=3, padding=1, stride=2), (13, 11)),
    'k1': (dict(kernel_size=1), (9, 7)),
}


def build(options, randomize, channels=32, device='cpu'):
    torch.manual_seed(0)
    conv = FDConv(channels, channels, kernel_num=16, **options)
    randomize(conv)
    return conv.to(device)


@pytest.mark.parametrize('case', sorted(LAYERS))
def test_autocast_trains_the_layer(case, randomize, autocast_device):
    device, dtype = autocast_device
    options, size = LAYERS[case]
    conv = build(options, randomize, device=device)
    assert conv.fdconv_active and (conv.FBM is not None) == (options['kernel_size'] == 3)
    x = torch.randn(2, 32, *size).to(device)
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


def test_compiled_forward_has_no_graph_break(randomize, device):
    for options, size in (LAYERS['k3-fbm-kernels-dominate'], LAYERS['k1']):
        conv = build(options, randomize, device=device)
        torch._dynamo.reset()
        explanation = torch._dynamo.explain(conv)(torch.randn(2, 32, *size, device=device))
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1


def compile_layer(conv, device):
    """Inductor; on the CPU ``aot_eager`` on a machine without the C++ compiler inductor's
    CPU code needs (any other inductor failure fails the test); on CUDA always inductor."""
    torch.compiler.reset()
    if device.type == 'cuda' or any(
        shutil.which(compiler) for compiler in ('c++', 'g++', 'clang++')
    ):
        return torch.compile(conv)
    warnings.warn('no C++ compiler: checking with aot_eager instead of inductor', stacklevel=2)
    return torch.compile(conv, backend='aot_eager')


@pytest.mark.slow  # inductor compiles forward and backward: 10 to 25 s per layer here
@pytest.mark.parametrize('case', ['k3-fbm-kernels-dominate', 'k1'])
def test_compiled_layer_matches_eager(case, randomize, device):
    options, size = LAYERS[case]
    conv = build(options, randomize, device=device)
    x = torch.randn(2, 32, *size, device=device, requires_grad=True)
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
@pytest.mark.parametrize('case', ['k1', 'k3-fbm-maps-dominate'])
def test_compiled_layer_follows_new_input_sizes(case, randomize, device):
    """A detector's images change size: from the second size on, dynamo recompiles the
    layer with symbolic shapes, which must still build and match eager."""
    options, _ = LAYERS[case]
    conv = build(options, randomize, device=device)
    compiled = compile_layer(conv, device)
    for size in ((9, 7), (12, 10), (8, 11)):
        x = torch.randn(2, 32, *size, device=device, requires_grad=True)
        expected = conv(x)
        (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='.*complex operators.*')
            y = compiled(x)
        (grad,) = torch.autograd.grad(y.square().sum(), x)
        assert relative_error(y, expected) < 1e-4, size
        assert relative_error(grad, expected_grad) < 1e-4, size
