"""Every execution path of FDConv, on every layer case, against docs/spec.md as written.

FDConv computes one function along several paths (fdconv_mm/layers/fdconv.py): the fast
path, whose autograd function rebuilds the features and kernels for the backward pass
('fast') or keeps them ('keep_for_backward'), and builds them once without a graph under
``torch.no_grad`` ('no_grad'); :func:`reference.fdconv` with ``torch.fft``
(``forward_as_specified``, 'reference') and with the real-arithmetic DFT of the ONNX
export ('export'). Each is held to the independent float64 transcription
``fdconv_as_written`` (tests/fdconv_testing.py), the paths with gradients in training
mode (batch statistics) and in eval mode (running statistics, e.g. ``norm_eval``): the
output and the gradients of the input and of every parameter.
"""

from functools import lru_cache
from typing import Dict, Optional, Tuple

import pytest
import torch
from torch import Tensor

from fdconv_mm.layers import is_exporting, reference
from fdconv_mm.layers.frequency import lowpass_masks
from fdconv_testing import LAYER_CASES, build_layer, fdconv_as_written, layer_input

BATCH = 3
# float64 throughout: the paths regroup sums (FBM's bands, attentions moved between kernels
# and features, hand-written gradients), so they differ from the definition by rounding only.
OUTPUT_TOLERANCE = dict(rtol=1e-9, atol=1e-10)
GRAD_TOLERANCE = dict(rtol=1e-8, atol=1e-10)
# The export path's DFTs multiply by cos/sin tables in mixed-radix stages instead of
# running torch's FFT, and need no looser bound: measured at most 1.2e-14 off the
# definition over these cases, as the torch.fft paths (1.4e-14).
EXPORT_TOLERANCE = OUTPUT_TOLERANCE

# path -> whether its gradients are checked too
PATHS = {
    'fast-train': True,
    'fast-eval': True,
    'keep_for_backward-train': True,
    'keep_for_backward-eval': True,
    'no_grad': False,
    'reference': False,
    'export': False,
}

Result = Tuple[Tensor, Optional[Dict[str, Optional[Tensor]]]]


def gradients(conv, x: Tensor, out: Tensor, grad_output: Tensor) -> Dict[str, Optional[Tensor]]:
    """Gradients of ``(out * grad_output).sum()``: 'input' and every parameter by name
    (None where the output does not depend on it)."""
    names, params = zip(*((n, p) for n, p in conv.named_parameters() if p.requires_grad))
    grads = torch.autograd.grad(out, [x, *params], grad_output, allow_unused=True)
    return dict(zip(('input', *names), grads))


@lru_cache(maxsize=None)
def as_written(case: str, training: bool) -> Result:
    """``fdconv_as_written``'s output and gradients, computed once per case and mode."""
    conv = build_layer(case).train(training)
    x = layer_input(case, BATCH).requires_grad_()
    out = fdconv_as_written(conv, x)
    grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    return out.detach(), gradients(conv, x, out, grad_output.double())


def run_path(case: str, path: str) -> Result:
    """The path's output, and its gradients for the paths that train."""
    x = layer_input(case, BATCH)
    if path in ('no_grad', 'reference', 'export'):
        conv = build_layer(case).eval()
        with torch.no_grad():
            if path == 'no_grad':
                return conv(x), None
            if path == 'reference':
                return conv.forward_as_specified(x), None
            out = reference.fdconv(conv, x, reference.REAL_DFT)
            assert not is_exporting()  # the export's path, run outside an export
            return out, None
    name, mode = path.rsplit('-', 1)
    conv = build_layer(case, keep_for_backward=name == 'keep_for_backward')
    conv.train(mode == 'train')
    x.requires_grad_()
    out = conv(x)
    grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    return out.detach(), gradients(conv, x, out, grad_output.double())


@pytest.mark.parametrize('path', list(PATHS))
@pytest.mark.parametrize('case', sorted(LAYER_CASES))
def test_path_computes_the_definition(case: str, path: str) -> None:
    out, grads = run_path(case, path)
    training = path.endswith('-train')
    expected, expected_grads = as_written(case, training)
    tolerance = EXPORT_TOLERANCE if path == 'export' else OUTPUT_TOLERANCE
    torch.testing.assert_close(out, expected, **tolerance)
    if not PATHS[path]:
        return
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        want = expected_grads[name]
        # (with one group and no other attention, KSM-global's trunk feeds nothing)
        assert (grad is None) == (want is None), name
        if grad is not None:
            torch.testing.assert_close(grad, want, **GRAD_TOLERANCE, msg=name)


@pytest.mark.parametrize('case', sorted(LAYER_CASES))
def test_case_is_what_its_tags_say(case: str) -> None:
    options, (height, width), covers = LAYER_CASES[case]
    conv = build_layer(case, torch.float32)
    assert conv.fdconv_active
    kernel_h, kernel_w = conv.kernel_size
    facts = {
        'fbm': conv.FBM is not None,
        'no-fbm': conv.FBM is None,
        'kernels-dominate': conv.kernel_dominates(height, width),
        'maps-dominate': not conv.kernel_dominates(height, width),
        'non-square': kernel_h != kernel_w,
        'stride': max(conv.stride) > 1,
        'dilation': max(conv.dilation) > 1,
        'no-bias': conv.bias is None,
        'no-local': conv.KSM_Local is None,
        'tanh': conv.KSM_Global.act == 'tanh',
        'param-ratio': conv.param_ratio > 1,
        'one-group': conv.kernel_num == 1,
        'spatial-weight': not conv.convert_param,
        'padding-mode': conv.padding_mode != 'zeros',
        'padding-same': conv.padding == 'same',
        'fbm-options': 'fbm_cfg' in options,
        'only-kernel-attention': conv.KSM_Global.channel_fc is None,
        'one-dimensional': width == 1,
        'all-bands-differ': conv.FBM is not None and every_band_differs(conv, height, width),
        'kxk-matmul': kernel_h * kernel_w > 1 and conv_takes_matmul(conv, case),
    }
    assert set(covers) <= set(facts), set(covers) - set(facts)
    assert {tag for tag, holds in facts.items() if holds} == set(covers)


def conv_takes_matmul(conv, case: str) -> bool:
    """Whether the per-sample conv of this case runs as a matmul (sample_conv.py)."""
    features = conv.conv_features(layer_input(case, dtype=torch.float32), None, None, None)
    return conv.conv_geometry.uses_matmul(features, conv.out_channels)


def every_band_differs(conv, height: int, width: int) -> bool:
    """Whether each of FBM's bands is non-zero at this size: the low-pass masks differ
    from each other and the first is not all-pass."""
    masks = lowpass_masks(height, width, conv.FBM.k_list)
    distinct = len({tuple(mask.flatten().tolist()) for mask in masks}) == len(masks)
    return distinct and not bool(masks[0].all())


@pytest.mark.parametrize('case', sorted(LAYER_CASES))
def test_traced_forward_runs_the_specified_operators(case: str) -> None:
    """``torch.jit.trace`` records ``forward_as_specified`` (what FLOP counters count): the
    definition's FFTs, none of the fast path's autograd functions."""
    conv = build_layer(case).eval()
    x = layer_input(case)
    with torch.no_grad():
        expected = conv(x)
        traced = torch.jit.trace(conv, (x,), check_trace=False)
    graph = str(traced.inlined_graph)
    assert 'aten::fft_irfft2' in graph and 'PythonOp' not in graph
    assert ('aten::fft_rfft2' in graph) == (conv.FBM is not None)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), expected)


def test_frozen_layer_still_passes_the_input_gradient() -> None:
    """No parameter needs a gradient: the fast path differentiates the input alone."""
    conv = build_layer('k3-kernels-dominate').requires_grad_(False)
    x = layer_input('k3-kernels-dominate').requires_grad_()
    (grad,) = torch.autograd.grad(conv(x).square().sum(), x)
    (expected,) = torch.autograd.grad(fdconv_as_written(conv, x).square().sum(), x)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize('case', ['k3-maps-dominate', 'k1'])
def test_parameters_only_need_no_input_gradient(case: str) -> None:
    """The input needs no gradient (a first layer): the fast path differentiates the
    parameters alone."""
    conv = build_layer(case)
    x = layer_input(case)
    params = [p for p in conv.parameters() if p.requires_grad]
    grads = torch.autograd.grad(conv(x).square().sum(), params)
    expected = torch.autograd.grad(fdconv_as_written(conv, x).square().sum(), params)
    for grad, want in zip(grads, expected):
        torch.testing.assert_close(grad, want)
