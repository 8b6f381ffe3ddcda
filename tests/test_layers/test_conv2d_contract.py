"""FDConv keeps ``nn.Conv2d``'s module contract: what torch's own module tests do to a conv.

Factory kwargs, meta construction, ``to_empty`` + ``reset_parameters``, channels-last,
unbatched input, state-dict round trips, pickling, dtype moves, gradients; then the
state-dict rules of docs/spec.md section 9 (plain conv dicts, the recorded frequency order).
"""

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fdconv_mm import FDConv
from fdconv_mm.layers.frequency import frequency_group_index
from fdconv_testing import relative_error

SHAPES = {
    'k1': dict(in_channels=24, out_channels=32, kernel_size=1),
    'k3': dict(in_channels=24, out_channels=20, kernel_size=3, padding=1),
}


def spatial_weight(conv: FDConv) -> torch.Tensor:
    """The spatial weight a neutral layer computes with (inverse of docs/spec.md section 7)."""
    kernel_h, kernel_w = conv.kernel_size
    spectrum = torch.view_as_complex(conv.dft_weight[0].double().contiguous())
    matrix = torch.fft.irfft2(
        spectrum, s=(conv.out_channels * kernel_h, conv.in_channels * kernel_w)
    )
    matrix = matrix * (min(conv.in_channels, conv.out_channels) // 2)
    return matrix.view(conv.out_channels, kernel_h, conv.in_channels, kernel_w).permute(0, 2, 1, 3)


def assert_neutral_conv(conv: FDConv, height: int = 9, width: int = 8) -> None:
    """A layer with neutral heads computes the plain conv of its own weight."""
    x = torch.randn(2, conv.in_channels, height, width, dtype=torch.float64)
    expected = F.conv2d(x, spatial_weight(conv), conv.bias.double(), conv.stride, conv.padding)
    with torch.no_grad():
        actual = copy.deepcopy(conv).double().eval()(x)
    assert relative_error(actual, expected) < 1e-4


@pytest.mark.parametrize('dtype', [torch.float64, torch.bfloat16])
def test_dtype_factory_kwarg_reaches_every_parameter_and_buffer(dtype):
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8, dtype=dtype)
    for name, tensor in [*conv.named_parameters(), *conv.named_buffers()]:
        if tensor.is_floating_point():
            assert tensor.dtype == dtype, name
    x = torch.randn(2, 32, 8, 8, dtype=dtype)
    conv.train()(x).sum().backward()
    with torch.no_grad():
        assert conv.eval()(x).dtype == dtype


def test_device_factory_kwarg_reaches_every_parameter_and_buffer():
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8, device='meta')
    tensors = dict([*conv.named_parameters(), *conv.named_buffers()])
    assert 'frequency_groups' in tensors
    assert all(t.device.type == 'meta' for t in tensors.values())


@pytest.mark.parametrize('how', ['context', 'kwarg'])
def test_meta_construction_then_to_empty_and_reset_parameters(how):
    if how == 'context':
        with torch.device('meta'):
            conv = FDConv(64, 64, 3, padding=1, kernel_num=8)
    else:
        conv = FDConv(64, 64, 3, padding=1, kernel_num=8, device='meta')
    conv.to_empty(device='cpu')
    conv.reset_parameters()
    expected = frequency_group_index(192, 192, 8, 'original')
    assert torch.equal(conv.frequency_groups, expected)
    assert conv.KSM_Global.bn.running_var.eq(1).all()
    assert_neutral_conv(conv)


def test_reset_parameters_reinitializes_as_a_new_layer(randomize):
    torch.manual_seed(0)
    conv = FDConv(24, 20, 3, padding=1, kernel_num=4)
    before = conv.dft_weight.detach().clone()
    randomize(conv)
    conv.frequency_groups.zero_()
    conv.apply(lambda m: m.reset_parameters() if isinstance(m, FDConv) else None)
    assert not torch.equal(conv.dft_weight, before)
    assert torch.equal(conv.frequency_groups, frequency_group_index(60, 72, 4, 'original'))
    fan_in = 24 * 9
    assert conv.bias.abs().max() <= 1 / math.sqrt(fan_in)
    # the weight has nn.Conv2d's init: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), ...)
    assert spatial_weight(conv).abs().max() <= 1 / math.sqrt(fan_in) + 1e-6
    assert_neutral_conv(conv)


def test_reset_parameters_of_a_spatial_weight_layer(randomize):
    conv = FDConv(24, 20, 3, padding=1, convert_param=False)
    randomize(conv)
    conv.reset_parameters()
    x = torch.randn(2, 24, 7, 6)
    with torch.no_grad():
        assert relative_error(conv.eval()(x), F.conv2d(x, conv.weight, conv.bias, padding=1)) < 1e-4


def test_channels_last_module_and_input(randomize):
    torch.manual_seed(0)
    conv = FDConv(24, 20, 3, padding=1, kernel_num=4)
    randomize(conv)
    x = torch.randn(2, 24, 9, 7)
    expected = conv(x)
    conv = conv.to(memory_format=torch.channels_last)
    assert conv.dft_weight.is_contiguous()
    out = conv(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert conv.dft_weight.grad is not None
    assert conv(x).is_contiguous()


@pytest.mark.parametrize('shape', sorted(SHAPES))
def test_unbatched_input_as_conv2d(shape, randomize):
    conv = FDConv(**SHAPES[shape], kernel_num=4).eval()
    randomize(conv)
    x = torch.randn(conv.in_channels, 7, 6)
    with torch.no_grad():
        out = conv(x)
        torch.testing.assert_close(out, conv(x[None])[0])
    plain = nn.Conv2d(**SHAPES[shape])
    assert out.shape == plain(x).shape


def test_bad_input_rank_names_the_expected_shapes():
    conv = FDConv(24, 20, 3, padding=1)
    with pytest.raises(ValueError, match=r'\(B, 24, H, W\) or \(24, H, W\)'):
        conv(torch.randn(24, 7))


@pytest.mark.parametrize('strict', [True, False])
def test_plain_conv_state_dict_loads_strictly_and_keeps_the_heads(strict, randomize):
    torch.manual_seed(0)
    plain = nn.Conv2d(32, 32, 3, padding=1)
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8).eval()
    heads = {k: v.clone() for k, v in conv.state_dict().items() if '.' in k}
    result = conv.load_state_dict(plain.state_dict(), strict=strict)
    assert not result.missing_keys and not result.unexpected_keys
    assert all(torch.equal(conv.state_dict()[k], v) for k, v in heads.items())
    x = torch.randn(2, 32, 9, 11)
    with torch.no_grad():
        assert relative_error(conv(x), plain(x)) < 1e-4


def test_partial_heads_are_still_missing_keys():
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8)
    state = nn.Conv2d(32, 32, 3, padding=1).state_dict()
    state['KSM_Global.fc.weight'] = conv.KSM_Global.fc.weight.detach().clone()
    with pytest.raises(RuntimeError, match='Missing key.*KSM_Global.bn.weight'):
        conv.load_state_dict(state)


def test_frequency_order_travels_with_the_state_dict():
    trained = FDConv(32, 32, 3, padding=1, kernel_num=8, frequency_order='stable')
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state._metadata['']['frequency_order'] == 'stable'
    assert 'frequency_order' not in str(list(state))  # no key of its own
    FDConv(32, 32, 3, padding=1, kernel_num=8, frequency_order='stable').load_state_dict(state)
    default = FDConv(32, 32, 3, padding=1, kernel_num=8)
    for strict in (True, False):
        with pytest.raises(
            RuntimeError, match=r"frequency_order='stable'.*frequency_order='original'"
        ):
            default.load_state_dict(state, strict=strict)
    # a dict without the record (the original code's, fdconv-mm 0.1's) loads as before
    default.load_state_dict(dict(state))


def test_frequency_order_of_nested_layers_is_checked_per_layer():
    def model(order):
        return nn.Sequential(
            nn.Conv2d(3, 32, 3), FDConv(32, 32, 3, kernel_num=4, frequency_order=order)
        )

    state = model('exact').state_dict()
    assert state._metadata['1']['frequency_order'] == 'exact'
    with pytest.raises(RuntimeError, match="mismatch for 1: .*'exact'.*'stable'"):
        model('stable').load_state_dict(state)


# What torch's module tests do to every conv (torch/testing/_internal/common_modules.py):
# forward, factory kwargs, pickle, repr, state-dict round trip, to(dtype), deepcopy,
# train/eval, non-contiguous input, gradcheck.
CONTRACT = [
    'forward',
    'pickle',
    'state_dict',
    'to_dtype',
    'deepcopy',
    'non_contiguous',
    'gradcheck',
]


@pytest.mark.parametrize('shape', sorted(SHAPES))
@pytest.mark.parametrize('behaviour', CONTRACT)
def test_conv2d_behaviours(shape, behaviour, randomize):
    torch.manual_seed(0)
    options = SHAPES[shape]
    conv = FDConv(**options, kernel_num=4)
    plain = nn.Conv2d(**options)
    assert conv.fdconv_active
    randomize(conv)
    conv.eval()
    x = torch.randn(2, conv.in_channels, 6, 5)
    with torch.no_grad():
        expected = conv(x)
    if behaviour == 'forward':
        assert expected.shape == plain(x).shape and torch.isfinite(expected).all()
        assert conv.extra_repr().startswith(plain.extra_repr())
    elif behaviour == 'pickle':
        buffer = io.BytesIO()
        torch.save(conv, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
    elif behaviour == 'state_dict':
        fresh = FDConv(**options, kernel_num=4).eval()
        fresh.load_state_dict(conv.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)
    elif behaviour == 'to_dtype':
        conv.double()
        assert all(p.dtype == torch.float64 for p in conv.parameters())
        with torch.no_grad():
            torch.testing.assert_close(conv(x.double()).float(), expected, rtol=1e-4, atol=1e-5)
        conv.float()
        with torch.no_grad():
            torch.testing.assert_close(conv(x), expected, rtol=0, atol=0)
    elif behaviour == 'deepcopy':
        twin = copy.deepcopy(conv)
        with torch.no_grad():
            twin.bias.add_(1)
            torch.testing.assert_close(conv(x), expected, rtol=0, atol=0)
    elif behaviour == 'non_contiguous':
        wide = torch.randn(2, conv.in_channels, 6, 10)[..., ::2]
        assert not wide.is_contiguous()
        with torch.no_grad():
            torch.testing.assert_close(conv(wide), conv(wide.contiguous()))
    else:
        conv.double().train()
        conv.KSM_Global.bn.eval()  # fixed statistics: a function of the input alone
        small = torch.randn(2, conv.in_channels, 4, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(conv, (small,), eps=1e-6, atol=1e-5)
