"""``keep_for_backward``: the kernels and FBM features of the forward pass serve the backward
pass instead of being rebuilt there. That it computes the same function and gradients as
the lean default, the definition's, is the 'keep_for_backward' path of test_paths.py."""

import pytest
import torch
from torch import nn

from fdconv_mm import FDConv


def build_pair(randomize, **options):
    """A lean layer and a keeping one with the same (non-neutral) parameters."""
    lean = FDConv(**options).double()
    randomize(lean, seed=1)
    keeping = FDConv(keep_for_backward=True, **options).double()
    keeping.load_state_dict(lean.state_dict())
    return lean, keeping


def test_kept_features_serve_the_backward_pass(monkeypatch, randomize):
    """The keeping layer builds its kernels and FBM features once per step, the lean one twice."""
    from fdconv_mm.layers.fbm import BandModulation
    from fdconv_mm.layers.kernel_synthesis import KernelSynthesis

    lean, keeping = build_pair(randomize, in_channels=32, out_channels=32, kernel_size=3, padding=1)
    calls = {'build': 0, 'fbm': 0}
    build, fbm_forward = KernelSynthesis.build, BandModulation.forward

    def counting_build(self, *args, **kwargs):
        calls['build'] += 1
        return build(self, *args, **kwargs)

    def counting_fbm(*args, **kwargs):
        calls['fbm'] += 1
        return fbm_forward(*args, **kwargs)

    monkeypatch.setattr(KernelSynthesis, 'build', counting_build)
    monkeypatch.setattr(BandModulation, 'forward', staticmethod(counting_fbm))
    x = torch.randn(2, 32, 16, 16, dtype=torch.float64)
    counts = {}
    for name, conv in (('lean', lean), ('keep', keeping)):
        calls.update(build=0, fbm=0)
        conv(x.clone().requires_grad_()).sum().backward()
        counts[name] = dict(calls)
    assert counts == {'lean': {'build': 2, 'fbm': 2}, 'keep': {'build': 1, 'fbm': 1}}


def test_in_place_ops_after_a_keeping_layer(randomize):
    """A residual ``+=`` then an in-place ReLU, as mm blocks do, above and below the
    ``kernel_dominates`` threshold (36 x 36 and 4 x 4 for 32 -> 32 3x3)."""
    lean, keeping = build_pair(randomize, in_channels=32, out_channels=32, kernel_size=3, padding=1)
    for size in (36, 4):
        x = torch.randn(2, 32, size, size, dtype=torch.float64)
        expected = torch.relu(lean(x) + x)
        out = keeping(x)
        out += x
        out = nn.ReLU(inplace=True)(out)
        torch.testing.assert_close(out, expected)
        out.sum().backward()
        assert keeping.dft_weight.grad is not None


def test_a_second_backward_pass_is_refused_clearly():
    conv = FDConv(32, 32, 3, padding=1, keep_for_backward=True)
    out = conv(torch.randn(2, 32, 8, 8)).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match='keep_for_backward=False'):
        out.backward()


def test_lean_layer_supports_retain_graph():
    conv = FDConv(32, 32, 3, padding=1)
    out = conv(torch.randn(2, 32, 8, 8)).sum()
    out.backward(retain_graph=True)
    first = conv.dft_weight.grad.clone()
    out.backward()
    torch.testing.assert_close(conv.dft_weight.grad, 2 * first)


def test_bf16_autocast_matches_the_lean_layer(randomize):
    lean, keeping = build_pair(randomize, in_channels=32, out_channels=32, kernel_size=3, padding=1)
    lean.float()
    keeping.float()
    x = torch.randn(2, 32, 12, 12)
    results = []
    for conv in (lean, keeping):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = conv(x)
        out.float().square().sum().backward()
        results.append((out.float(), conv.dft_weight.grad.clone()))
    torch.testing.assert_close(results[1][0], results[0][0])
    torch.testing.assert_close(results[1][1], results[0][1])


def test_option_is_checked():
    with pytest.raises(ValueError, match='keep_for_backward'):
        FDConv(32, 32, 3, keep_for_backward='yes')


@pytest.mark.parametrize('kernel_size', [1, 3])
def test_compiled_keeping_layer_matches_eager_over_sizes(kernel_size):
    conv = FDConv(32, 32, kernel_size, padding=kernel_size // 2, keep_for_backward=True)
    compiled = torch.compile(conv)
    for size in (16, 20):
        x = torch.randn(2, 32, size, size, requires_grad=True)
        compiled(x).sum().backward()
        compiled_grad, x.grad = x.grad, None
        conv(x).sum().backward()
        torch.testing.assert_close(compiled_grad, x.grad, rtol=1e-4, atol=1e-5)
