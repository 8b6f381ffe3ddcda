"""Every bad option gives the documented error, naming the option."""

import pytest

from fdconv_mm import FDConv
from fdconv_mm.layers import FDConvLinear


def build(**options):
    return FDConv(32, 32, 3, padding=1, **options)


@pytest.mark.parametrize(
    'options,match',
    [
        (dict(kernel_num=0), 'kernel_num=0'),
        (dict(kernel_num=2.5), 'kernel_num=2.5'),
        (dict(reduction=-1), 'reduction=-1'),
        (dict(kernel_temp=0), 'kernel_temp=0'),
        (dict(temp=-2.0), 'temp=-2.0'),
        (dict(param_ratio=0), 'param_ratio=0'),
        (dict(param_reduction=0.5), r'param_reduction=0.5 .*allowed values: 1.0'),
        (dict(spatial_freq_decompose=True), r'spatial_freq_decompose=True .*allowed values: False'),
        (dict(linear_mode=True), 'linear_mode=True'),
        (dict(ksm_local_act='relu'), r"ksm_local_act='relu' .*'sigmoid', 'tanh'"),
        (dict(ksm_global_act='softmax'), r"ksm_global_act='softmax' .*'sigmoid', 'tanh'"),
        (dict(use_fdconv_if_k_in=3), 'use_fdconv_if_k_in=3'),
        (dict(use_fbm_if_k_in='3'), 'use_fbm_if_k_in'),
        (dict(use_fdconv_if_c_gt='16'), 'use_fdconv_if_c_gt'),
        (dict(att_multi='2'), 'att_multi'),
        (dict(use_ksm_local='yes'), 'use_ksm_local'),
        (dict(frequency_order='float'), r"frequency_order='float' .*'original', 'stable', 'exact'"),
        (dict(fbm_cfg=dict(act='relu')), r"fbm_cfg.act='relu' .*'sigmoid', 'tanh', 'softmax'"),
        (dict(fbm_cfg=dict(k_list=[])), 'k_list'),
        (dict(fbm_cfg=dict(k_list=[2, 0])), 'k_list'),
        (dict(fbm_cfg=dict(spatial_kernel=2)), 'spatial_kernel=2'),
        (dict(fbm_cfg=dict(spatial_group=5)), 'spatial_group=5 .*in_channels=32'),
        (dict(fbm_cfg=dict(init='random')), "fbm_cfg.init='random'"),
        (dict(kernel_num=8, n_freq_groups=16), 'kernel_num=8 and n_freq_groups=16'),
        # one clear line, not a dict() or NaN surprise (issue 19)
        (dict(fbm_cfg=[2, 4]), r'fbm_cfg=\[2, 4\] must be a dict of FBM settings'),
        (dict(att_multi=float('nan')), 'att_multi=nan must be a positive float'),
        (dict(att_multi=float('inf')), 'att_multi=inf'),
        (dict(att_multi=0), 'att_multi=0'),
        (dict(kernel_temp=float('nan')), 'kernel_temp=nan'),
        (dict(reduction=float('inf')), 'reduction=inf'),
        (dict(fbm_cfg=dict(k_list=[2, float('nan')])), 'k_list'),
    ],
)
def test_undefined_values_are_value_errors(options, match):
    with pytest.raises(ValueError, match=match):
        build(**options)


def test_values_are_checked_for_inactive_layers_too():
    with pytest.raises(ValueError, match='ksm_local_act'):
        FDConv(8, 8, 3, ksm_local_act='gelu')


@pytest.mark.parametrize(
    'build_layer,options,name,close,valid',
    [
        (build, dict(kernel_nums=64), 'kernel_nums', 'kernel_num', ('fbm_cfg', 'padding')),
        (build, dict(fbm_cfg=dict(k_lists=[2])), 'k_lists', 'k_list', ('act', 'max_size')),
        (
            FDConvLinear,
            dict(in_features=32, out_features=32, reductoin=0.1),
            'reductoin',
            'reduction',
            ('kernel_num',),
        ),
    ],
)
def test_unknown_names_are_type_errors_listing_the_valid_names(
    build_layer, options, name, close, valid
):
    with pytest.raises(TypeError) as error:
        build_layer(**options)
    message = str(error.value)
    assert f"unknown option(s) '{name}' (did you mean '{close}'?)" in message
    listed = message.split('valid options: ')[1].split(', ')
    assert set(valid) <= set(listed) and name not in listed


def test_grouped_active_layer_is_refused():
    with pytest.raises(ValueError, match='groups=1 only, got groups=2'):
        FDConv(32, 32, 3, groups=2)
    assert not FDConv(32, 32, 3, groups=2, use_fdconv_if_c_gt=64).fdconv_active


def test_accepted_options_without_effect():
    fbm_cfg = dict(
        k_list=[2, 4, 8], fs_feat='feat', spatial='conv', global_selection=False, max_size=(64, 64)
    )
    conv = build(att_grid=1, use_fdconv_if_stride_in=[1], fbm_cfg=fbm_cfg, kernel_num=8)
    assert conv.FBM.k_list == (2, 4, 8)


def test_n_freq_groups_is_kernel_num():
    assert build(n_freq_groups=16).kernel_num == 16
    assert build(n_freq_groups=16, kernel_num=16).kernel_num == 16
    assert build().kernel_num == 4
