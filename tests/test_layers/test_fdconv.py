import copy
import io
import math
import re

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from fdconv_mm import FDConv
from fdconv_mm.layers.fast_path import spatial_mean
from fdconv_mm.layers.frequency import kernel_to_spectrum
from fdconv_testing import relative_error


@pytest.mark.parametrize('kernel_size', [1, 3])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_neutral_layer_from_conv_weight_equals_conv(kernel_size, stride, bias, mode):
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 48, kernel_size, stride, kernel_size // 2, bias=bias)
    fdconv = FDConv(
        32,
        48,
        kernel_size,
        stride,
        kernel_size // 2,
        bias=bias,
        kernel_num=16,
        use_fbm_for_stride=True,
    )
    assert fdconv.fdconv_active and (fdconv.FBM is not None) == (kernel_size == 3 or stride > 1)
    with torch.no_grad():
        fdconv.dft_weight.copy_(kernel_to_spectrum(conv.weight))
        if bias:
            fdconv.bias.copy_(conv.bias)
    x = torch.randn(2, 32, 15, 20)
    getattr(fdconv, mode)()
    with torch.no_grad():
        assert relative_error(fdconv(x), conv(x)) < 1e-4


def test_spatial_weight_converts_on_load_and_leaves_the_dict_alone():
    conv = nn.Conv2d(32, 32, 3, padding=1)
    fdconv = FDConv(32, 32, 3, padding=1, kernel_num=8).eval()
    state = conv.state_dict()
    saved = {k: v.clone() for k, v in state.items()}
    fdconv.load_state_dict(state, strict=False)
    assert set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved)
    x = torch.randn(1, 32, 9, 11)
    with torch.no_grad():
        assert relative_error(fdconv(x), conv(x)) < 1e-4
    fdconv.load_state_dict(state, strict=True)  # a plain conv's dict, strictly (spec section 9)
    assert set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved)


@pytest.mark.parametrize('strict', [True, False])
@pytest.mark.parametrize(
    'kernel_size,shape', [(3, (32, 32, 1, 1)), (3, (32, 16, 3, 3)), (1, (16, 32)), (1, (32, 32, 3))]
)
def test_misshaped_conv_weight_is_a_size_mismatch_as_in_conv2d(kernel_size, shape, strict):
    fdconv = FDConv(32, 32, kernel_size, kernel_num=8)
    before = fdconv.dft_weight.detach().clone()
    state = {'weight': torch.randn(shape)}
    given, wanted = torch.Size(shape), torch.Size((32, 32, kernel_size, kernel_size))
    expected = rf'size mismatch for weight: .*{re.escape(str(given))}.*{re.escape(str(wanted))}'
    with pytest.raises(RuntimeError, match=expected):
        fdconv.load_state_dict(state, strict=strict)
    with pytest.raises(RuntimeError, match='size mismatch for weight'):
        nn.Conv2d(32, 32, kernel_size).load_state_dict(state, strict=strict)
    assert torch.equal(fdconv.dft_weight, before)


def test_misshaped_weight_of_a_nested_layer_names_its_key():
    model = nn.Sequential(nn.Identity(), FDConv(32, 32, 3, kernel_num=8))
    with pytest.raises(RuntimeError, match=r'size mismatch for 1\.weight'):
        model.load_state_dict({'1.weight': torch.randn(32, 32, 1, 1)}, strict=False)


def test_gradcheck_float64(randomize):
    torch.manual_seed(0)
    conv = FDConv(
        4,
        6,
        3,
        padding=1,
        kernel_num=4,
        use_fdconv_if_c_gt=2,
        fbm_cfg=dict(k_list=(2, 4), lowfreq_att=True),
    ).double()
    randomize(conv)
    names = [
        'dft_weight',
        'KSM_Global.kernel_fc.weight',
        'KSM_Local.conv.weight',
        'FBM.freq_weight_conv_list.2.weight',
    ]
    params = dict(conv.named_parameters())

    def run(x, *tensors):
        return torch.func.functional_call(conv, {**params, **dict(zip(names, tensors))}, (x,))

    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    inputs = [x] + [params[n].detach().clone().requires_grad_() for n in names]
    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-5)


class ConvertedBatchNorm(_BatchNorm):
    """Like mmengine's ``_BatchNormXd``: a BatchNorm that is not a ``BatchNorm2d``."""

    def _check_input_dim(self, input):
        pass


BATCH_NORM_CONVERSIONS = {
    'BatchNorm2d': lambda bn: bn,
    'SyncBatchNorm, one process': lambda bn: nn.SyncBatchNorm.convert_sync_batchnorm(bn),
    'other _BatchNorm': lambda bn: ConvertedBatchNorm(bn.num_features),
}


@pytest.mark.parametrize('convert', BATCH_NORM_CONVERSIONS.values(), ids=BATCH_NORM_CONVERSIONS)
@pytest.mark.parametrize('batch', [0, 1])
def test_batch_size_one_or_zero_trains_like_eval_without_touching_statistics(
    randomize, convert, batch
):
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8)
    randomize(conv)
    conv.KSM_Global.bn = convert(conv.KSM_Global.bn)
    with torch.no_grad():
        conv.KSM_Global.bn.running_mean.normal_()
        conv.KSM_Global.bn.running_var.uniform_(0.5, 2.0)
    stats = {k: v.clone() for k, v in conv.KSM_Global.bn.state_dict().items()}
    x = torch.randn(batch, 32, 8, 8)
    y_train = conv.train()(x)
    y_train.sum().backward()
    assert all(torch.equal(v, conv.KSM_Global.bn.state_dict()[k]) for k, v in stats.items())
    with torch.no_grad():
        torch.testing.assert_close(y_train, conv.eval()(x))


def test_batch_statistics_are_used_for_larger_batches(randomize):
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8)
    randomize(conv)
    x = torch.randn(2, 32, 8, 8)
    before = conv.KSM_Global.bn.running_mean.clone()
    y_train = conv.train()(x)
    assert not torch.equal(before, conv.KSM_Global.bn.running_mean)
    assert relative_error(conv.eval()(x), y_train) > 1e-3


def test_bf16_autocast_forward_backward(randomize):
    torch.manual_seed(0)
    conv = FDConv(32, 32, 3, padding=1, kernel_num=16)
    randomize(conv)
    x = torch.randn(2, 32, 12, 10, requires_grad=True)
    expected = conv(x).detach()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    y.float().square().mean().backward()
    assert x.grad is not None and conv.dft_weight.grad.dtype == torch.float32
    assert relative_error(y.float(), expected) < 3e-2


def test_bf16_input_gives_bf16_output(randomize):
    conv = FDConv(32, 32, 3, padding=1, kernel_num=16)
    randomize(conv)
    x = torch.randn(2, 32, 12, 10)
    y = conv.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert relative_error(y.float(), conv.float()(x).detach()) < 5e-2


def test_convert_param_false_keeps_weight_and_matches(randomize):
    torch.manual_seed(0)
    spectral = FDConv(32, 40, 3, padding=1, kernel_num=8, param_ratio=2)
    spatial = FDConv(32, 40, 3, padding=1, kernel_num=8, param_ratio=2, convert_param=False)
    assert 'weight' in dict(spatial.named_parameters())
    assert 'dft_weight' not in spatial.state_dict() and 'weight' not in spectral.state_dict()
    randomize(spatial)
    state = {k: v for k, v in spatial.state_dict().items() if k != 'weight'}
    state['dft_weight'] = kernel_to_spectrum(spatial.weight.detach(), 2)
    spectral.load_state_dict(state, strict=True)
    x = torch.randn(2, 32, 9, 9)
    torch.testing.assert_close(spatial.eval()(x), spectral.eval()(x))


@pytest.mark.parametrize(
    'cin,cout,kernel,groups,active',
    [
        (16, 64, 3, 1, False),  # min(Cin, Cout) not > 16
        (64, 64, 5, 1, False),  # kernel size not in (1, 3)
        (64, 64, (1, 5), 1, False),  # a kernel side not in (1, 3)
        (64, 64, (1, 3), 1, True),  # non-square (spec section 1)
        (17, 17, 1, 1, True),
    ],
)
def test_inactive_layers_are_exactly_conv2d(cin, cout, kernel, groups, active):
    torch.manual_seed(0)
    layer = FDConv(cin, cout, kernel, padding=0, groups=groups, kernel_num=4)
    assert layer.fdconv_active == active
    if active:
        return
    assert set(layer.state_dict()) == {'weight', 'bias'}
    conv = nn.Conv2d(cin, cout, kernel, groups=groups)
    conv.load_state_dict(layer.state_dict())
    x = torch.randn(2, cin, 7, 7)
    assert torch.equal(layer(x), conv(x))


def test_odd_spectrum_width_and_uneven_groups(randomize):
    conv = FDConv(17, 19, 1, kernel_num=64)  # Cin * k = 17 is odd; N = 19 * 9 = 171
    assert conv.dft_weight.shape == (1, 19, 9, 2)
    assert torch.bincount(conv.frequency_groups.flatten()).tolist() == [3] * 43 + [2] * 21
    randomize(conv)
    y = conv(torch.randn(2, 17, 5, 6))
    assert y.shape == (2, 19, 5, 6) and torch.isfinite(y).all()


def test_dilation_padding_mode_and_stride(randomize):
    kwargs = dict(stride=2, padding=2, dilation=2, padding_mode='reflect', kernel_num=8)
    fdconv = FDConv(24, 24, 3, **kwargs)
    conv = nn.Conv2d(24, 24, 3, **{k: v for k, v in kwargs.items() if k != 'kernel_num'})
    fdconv.load_state_dict(conv.state_dict(), strict=False)
    x = torch.randn(2, 24, 13, 12)
    with torch.no_grad():
        assert relative_error(fdconv.eval()(x), conv(x)) < 1e-4


def test_kernel_num_none_and_temperatures():
    conv = FDConv(32, 48, 3, padding=1, kernel_num=None, param_ratio=2)
    assert conv.kernel_num == 24
    assert conv.KSM_Global.kernel_temperature == pytest.approx(math.sqrt(48))
    assert conv.KSM_Global.temperature == pytest.approx(math.sqrt(48))
    assert conv.KSM_Global.kernel_fc.out_channels == 48
    assert conv.dft_weight.shape == (2, 144, 49, 2)
    conv = FDConv(32, 48, 3, kernel_temp=2.0, temp=3.0)
    assert (conv.KSM_Global.kernel_temperature, conv.KSM_Global.temperature) == (2.0, 3.0)


@pytest.mark.parametrize(
    'options,absent',
    [
        (dict(ksm_only_kernel_att=True), ['channel_fc', 'filter_fc', 'spatial_fc']),
        (dict(kernel_num=1), ['kernel_fc']),
        (dict(use_ksm_local=False), ['KSM_Local']),
        (dict(use_fbm_if_k_in=()), ['FBM']),
    ],
)
def test_optional_parts_are_absent(options, absent, randomize):
    conv = FDConv(32, 32, 3, padding=1, **{'kernel_num': 8, **options})
    keys = ' '.join(conv.state_dict())
    assert all(name not in keys for name in absent)
    randomize(conv)
    y = conv(torch.randn(2, 32, 6, 6))
    assert torch.isfinite(y).all()


def test_state_dict_shapes_follow_the_spec():
    conv = FDConv(64, 128, 3, kernel_num=64, fbm_cfg=dict(spatial_group=4, lowfreq_att=True))
    shapes = {k: tuple(v.shape) for k, v in conv.state_dict().items()}
    assert shapes['dft_weight'] == (1, 384, 97, 2)
    assert shapes['KSM_Global.fc.weight'] == (16, 64, 1, 1)
    assert shapes['KSM_Global.spatial_fc.weight'] == (9, 16, 1, 1)
    assert shapes['KSM_Global.kernel_fc.weight'] == (64, 16, 1, 1)
    assert shapes['KSM_Local.conv.weight'] == (1152, 1, 5)
    assert shapes['FBM.freq_weight_conv_list.3.weight'] == (4, 16, 3, 3)
    assert 'frequency_groups' not in shapes
    assert FDConv(1024, 64, 1).state_dict()['KSM_Local.conv.weight'].shape[-1] == 7


@pytest.mark.parametrize('act', ['tanh', 'softmax'])
def test_fbm_acts_and_groups_are_neutral_at_init(act):
    conv = FDConv(
        32,
        32,
        3,
        padding=1,
        kernel_num=8,
        ksm_local_act='tanh',
        ksm_global_act='tanh',
        fbm_cfg=dict(act=act, spatial_group=4, lowfreq_att=True),
    )
    plain = nn.Conv2d(32, 32, 3, padding=1)
    conv.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 32, 10, 9)
    with torch.no_grad():
        assert relative_error(conv.eval()(x), plain(x)) < 1e-4


def test_state_dict_round_trip_through_a_file(randomize):
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8)
    randomize(conv)
    buffer = io.BytesIO()
    torch.save(conv.state_dict(), buffer)
    buffer.seek(0)
    clone = FDConv(32, 32, 3, padding=1, kernel_num=8)
    clone.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    x = torch.randn(2, 32, 7, 7)
    torch.testing.assert_close(clone.eval()(x), conv.eval()(x))
    torch.testing.assert_close(copy.deepcopy(conv)(x), conv(x))


def test_init_weights_restores_neutral_heads():
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8)
    reference = nn.Conv2d(32, 32, 3, padding=1)
    conv.load_state_dict(reference.state_dict(), strict=False)
    for module in conv.modules():  # what a Kaiming init over all Conv2d does
        if isinstance(module, nn.Conv2d) and module is not conv:
            nn.init.kaiming_normal_(module.weight)
    x = torch.randn(2, 32, 8, 8)
    assert relative_error(conv.eval()(x), reference(x)) > 1e-2
    conv.init_weights()
    with torch.no_grad():
        assert relative_error(conv(x), reference(x)) < 1e-4


def test_wrong_input_channels_is_a_clear_error():
    conv = FDConv(32, 32, 3, kernel_num=8)
    with pytest.raises(ValueError, match=r'expects input \(B, 32, H, W\)'):
        conv(torch.randn(2, 16, 8, 8))


def test_sample_kernels_are_independent(randomize):
    conv = FDConv(32, 32, 3, padding=1, kernel_num=8)
    randomize(conv)
    conv.eval()
    x = torch.randn(3, 32, 8, 8)
    with torch.no_grad():
        batched = conv(x)
        single = torch.cat([conv(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_sync_batch_norm_in_a_one_process_group_trains_on_a_single_sample(tmp_path):
    import torch.distributed as dist

    conv = FDConv(32, 32, 3, padding=1, kernel_num=4)
    conv.KSM_Global.bn = nn.SyncBatchNorm.convert_sync_batchnorm(conv.KSM_Global.bn)
    x = torch.randn(1, 32, 6, 6)
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        y_train = conv.train()(x)
    finally:
        dist.destroy_process_group()
    assert int(conv.KSM_Global.bn.num_batches_tracked) == 0
    with torch.no_grad():
        torch.testing.assert_close(y_train, conv.eval()(x))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_spatial_mean_is_the_mean_without_overflow(dtype):
    """The fast path's pooling sums in at least float32: a float16 sum of 64 x 64 values
    of 300 would overflow (1.2 M > 65504) where the mean does not."""
    x = torch.full((2, 3, 64, 64), 300.0, dtype=dtype, requires_grad=True)
    pooled = spatial_mean(x)
    assert pooled.dtype == dtype and pooled.shape == (2, 3, 1, 1)
    torch.testing.assert_close(pooled, x.mean(dim=(2, 3), keepdim=True))
    (grad,) = torch.autograd.grad(pooled.sum(), x)
    torch.testing.assert_close(grad, torch.full_like(x, 1 / 64**2))
