"""The numbers behind the FDConv figures, against independent computations.

The facts the figures rest on: the group kernels are each group's share of the layer's
kernel (they sum to it at uniform attention, and the Fourier transform of each is the
layer's spectrum on its group), kernels of disjoint Fourier support are orthogonal except
where ``irfft2``'s self-conjugate columns mix a mirrored pair of positions, and what the
layer computes from an input (attentions, KSM-local, FBM's band weights at the input's
size) is what the specification says.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS as DET_MODELS
from mmengine.registry import DefaultScope

import fdconv_mm  # noqa: F401  (registers the backbones)
from fdconv_mm.analysis.inspection import (
    attention_summary,
    band_ranges,
    cosine_similarity_matrix,
    default_layer_names,
    fdconv_layers,
    frequency_responses,
    group_kernels,
    independent_kernels,
    inspect_input,
    kernel_power_spectra,
    layer_mirrored_group_pairs,
    mirrored_group_pairs,
    non_orthogonal_pairs,
    radial_profile,
    record_attentions,
    select_layer_names,
    spectrum_frequencies,
)
from fdconv_mm.layers import FDConv, FDConvLinear, frequency_group_index
from fdconv_mm.layers.frequency import kernel_to_matrix


def random_layer(cin, cout, k, kernel_num, param_ratio=1, seed=0, **options):
    """A float64 FDConv with a random (not Hermitian) spectrum, as training leaves it."""
    torch.manual_seed(seed)
    layer = FDConv(
        cin, cout, k, padding=k // 2, kernel_num=kernel_num, param_ratio=param_ratio, **options
    ).double()
    with torch.no_grad():
        layer.dft_weight.normal_()
    return layer


def scaled_spectrum(layer):
    """``m0 * dft_weight`` as complex (P, Cout*k, Cin*k // 2 + 1): the group kernels' scale."""
    m0 = min(layer.in_channels, layer.out_channels) // 2
    return torch.view_as_complex(layer.dft_weight.detach().contiguous()) * m0


def spec_kernel(layer, spectrum):
    """SPEC section 4's kernel of a (Cout*k, Cin*k // 2 + 1) spectrum, by torch.fft directly."""
    k, cin, cout = layer.kernel_size[0], layer.in_channels, layer.out_channels
    matrix = torch.fft.irfft2(spectrum, s=(cout * k, cin * k))
    return matrix.reshape(cout, k, cin, k).permute(0, 2, 1, 3)


SHAPES = [
    # cin, cout, k, K, P: odd and even Cin*k, 1x1, P > 1, a single group
    (20, 24, 3, 8, 1),
    (21, 18, 3, 5, 2),
    (32, 40, 1, 16, 1),
    (24, 20, 3, 1, 1),
]


@pytest.mark.parametrize('cin, cout, k, kernel_num, param_ratio', SHAPES)
def test_group_kernels_sum_to_the_layer_kernel_at_uniform_attention(
    cin, cout, k, kernel_num, param_ratio
):
    layer = random_layer(cin, cout, k, kernel_num, param_ratio)
    kernels = group_kernels(layer, chunk=3)
    count = kernel_num * param_ratio
    assert kernels.shape == (count, cout, cin, k, k)
    # Uniform attention 1 / (K P): alpha / (K P) = m0, so the kernel is irfft2(m0 sum_p S_p).
    expected = spec_kernel(layer, scaled_spectrum(layer).sum(0))
    torch.testing.assert_close(kernels.sum(0), expected, rtol=1e-10, atol=1e-12)
    # And any attention mixes them linearly: kernel(a) = sum_j a_j K P kernels[j].
    if count > 1:
        attention = torch.rand(1, count, dtype=torch.float64)
        mixed = torch.einsum('j,j...->...', attention[0] * count, kernels)
        torch.testing.assert_close(
            layer.dynamic_kernel(attention)[0], mixed, rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize('cin, cout, k, kernel_num, param_ratio', SHAPES[:3])
def test_each_group_kernel_is_the_spectrum_on_its_group(cin, cout, k, kernel_num, param_ratio):
    layer = random_layer(cin, cout, k, kernel_num, param_ratio)
    kernels = group_kernels(layer)
    spectrum = scaled_spectrum(layer)
    groups = layer.frequency_groups
    ordinary = torch.ones_like(groups, dtype=torch.bool)
    ordinary[:, 0] = False  # self-conjugate columns: see the orthogonality test
    if (cin * k) % 2 == 0:
        ordinary[:, -1] = False
    for index, kernel in enumerate(kernels):
        copy, group = divmod(index, kernel_num)
        transform = torch.fft.rfft2(kernel_to_matrix(kernel))
        own = (groups == group) & ordinary
        torch.testing.assert_close(transform[own], spectrum[copy][own], rtol=1e-9, atol=1e-9)
        assert transform[~(groups == group) & ordinary].abs().max() < 1e-9


@pytest.mark.parametrize('column', ['first', 'nyquist'])
def test_irfft2_keeps_the_hermitian_part_of_a_self_conjugate_column(column):
    """Why split mirror pairs overlap: one position ``(u, v)`` of a self-conjugate column
    gives the same real matrix as half of it at ``(u, v)`` plus its conjugate at ``(-u, v)``."""
    rows, cols = 6, 8
    v = 0 if column == 'first' else cols // 2
    single = torch.zeros(rows, cols // 2 + 1, dtype=torch.complex128)
    single[2, v] = 3.0 + 4.0j
    hermitian = torch.zeros_like(single)
    hermitian[2, v] = single[2, v] / 2
    hermitian[rows - 2, v] = single[2, v].conj() / 2
    torch.testing.assert_close(
        torch.fft.irfft2(single, s=(rows, cols)), torch.fft.irfft2(hermitian, s=(rows, cols))
    )
    # An ordinary column has no such mirror inside the half spectrum.
    ordinary = torch.zeros_like(single)
    ordinary[2, 1] = 3.0 + 4.0j
    rebuilt = torch.fft.rfft2(torch.fft.irfft2(ordinary, s=(rows, cols)))
    torch.testing.assert_close(rebuilt, ordinary)


def brute_force_pairs(groups, cols):
    rows = groups.shape[0]
    columns = [0] + ([cols // 2] if cols % 2 == 0 else [])
    found = set()
    for v in columns:
        for u in range(1, rows):
            mirror = rows - u
            if u < mirror and groups[u, v] != groups[mirror, v]:
                found.add((u, v, int(groups[u, v]), int(groups[mirror, v])))
    return found


@pytest.mark.parametrize('rows, cols, num_groups', [(72, 60, 64), (120, 51, 64), (40, 96, 7)])
def test_mirrored_group_pairs_lists_the_split_pairs(rows, cols, num_groups):
    groups = frequency_group_index(rows, cols, num_groups)
    pairs = mirrored_group_pairs(groups, cols)
    assert {tuple(row) for row in pairs.tolist()} == brute_force_pairs(groups, cols)
    assert len(pairs) == len(brute_force_pairs(groups, cols))


# Shapes whose groups split mirror pairs (integer radius order, independent of sort
# implementations): on column 0 (Cin*k = 51 odd: no Nyquist column; a 1x1 layer), on the
# Nyquist column (Cin*k = 60) and on both (Cin*k = 72).
SPLIT_SHAPES = [
    (17, 40, 3, 64, {0}),
    (20, 24, 3, 64, {30}),
    (24, 20, 3, 64, {0, 36}),
    (64, 40, 1, 16, {0}),
]


@pytest.mark.parametrize('cin, cout, k, kernel_num, split_columns', SPLIT_SHAPES)
def test_group_kernels_are_orthogonal_except_at_split_mirror_pairs(
    cin, cout, k, kernel_num, split_columns
):
    layer = random_layer(cin, cout, k, kernel_num, frequency_order='exact')
    kernels = group_kernels(layer)
    rows, cols = cout * k, cin * k
    pairs = layer_mirrored_group_pairs(layer)
    assert set(pairs[:, 1].tolist()) == split_columns
    similarity = cosine_similarity_matrix(kernels)
    overlapping = non_orthogonal_pairs(layer)
    orthogonal = ~overlapping & ~torch.eye(kernel_num, dtype=torch.bool)
    assert similarity[orthogonal].abs().max() < 1e-12
    # Where they overlap, exactly by the mixed mirror pair: Re(Y_g[u, v] Y_h[-u, v]) / (2 N).
    spectrum = scaled_spectrum(layer)[0]
    expected = torch.zeros(kernel_num, kernel_num, dtype=torch.float64)
    for u, v, own, mirror in pairs.tolist():
        value = (spectrum[u, v] * spectrum[rows - u, v]).real / (2 * rows * cols)
        expected[own, mirror] += value
        expected[mirror, own] += value
    gram = kernels.flatten(1) @ kernels.flatten(1).T
    off_diagonal = ~torch.eye(kernel_num, dtype=torch.bool)
    torch.testing.assert_close(gram[off_diagonal], expected[off_diagonal], rtol=1e-9, atol=1e-12)
    assert (expected[overlapping].abs() > 0).all()


def test_converted_weights_overlap_positively_at_split_pairs():
    """A spectrum converted from a real kernel (the init) is Hermitian on the
    self-conjugate columns, Y[-u, v] = conj(Y[u, v]): the overlap is |Y[u, v]|^2 / (2 N) > 0."""
    torch.manual_seed(0)
    layer = FDConv(
        24, 20, 3, padding=1, kernel_num=64, frequency_order='exact', dtype=torch.float64
    )
    kernels = group_kernels(layer)
    gram = kernels.flatten(1) @ kernels.flatten(1).T
    spectrum, rows, cols = scaled_spectrum(layer)[0], 60, 72
    pairs = layer_mirrored_group_pairs(layer)
    assert len(pairs) == 5
    expected = torch.zeros_like(gram)
    for u, v, own, mirror in pairs.tolist():
        expected[own, mirror] += spectrum[u, v].abs() ** 2 / (2 * rows * cols)
    split = expected > 0
    torch.testing.assert_close(gram[split], expected[split], rtol=1e-8, atol=0)


def test_copies_share_positions_and_are_marked_as_overlapping():
    layer = random_layer(20, 24, 3, 4, param_ratio=2)
    mask = non_orthogonal_pairs(layer)
    assert mask.shape == (8, 8) and not mask.diagonal().any()
    assert mask[:4, 4:].all() and mask[4:, :4].all()
    similarity = cosine_similarity_matrix(group_kernels(layer))
    assert similarity[:4, 4:].diagonal().abs().min() > 1e-3, 'same group, other copy'


def test_cosine_similarity_matrix_matches_pairwise_cosines():
    kernels = torch.randn(5, 3, 4, 3, 3)
    kernels[3] = 0
    similarity = cosine_similarity_matrix(kernels)
    for i in range(5):
        for j in range(5):
            expected = F.cosine_similarity(
                kernels[i].flatten().double(), kernels[j].flatten().double(), dim=0
            )
            torch.testing.assert_close(similarity[i, j], expected)


def test_independent_kernels_are_drawn_as_conv2d_weights():
    kernels = independent_kernels((8, 6, 3, 3), 4, seed=3)
    assert kernels.shape == (4, 8, 6, 3, 3)
    torch.testing.assert_close(kernels, independent_kernels((8, 6, 3, 3), 4, seed=3))
    bound = 1 / math.sqrt(6 * 9)  # nn.Conv2d's Kaiming uniform with a = sqrt(5)
    assert kernels.abs().max() <= bound and kernels.abs().max() > 0.9 * bound
    assert not torch.equal(kernels[0], kernels[1])


@pytest.mark.parametrize('k, grid', [(3, 16), (3, 9), (5, 12), (1, 8)])
def test_power_spectra_match_the_zero_padded_fft(k, grid):
    kernels = torch.randn(4, 5, 6, k, k, dtype=torch.float64)
    power = kernel_power_spectra(kernels, grid)
    fft = torch.fft.fft2(kernels, s=(grid, grid))
    expected = torch.fft.fftshift(fft.abs().pow(2).mean(dim=(1, 2)), dim=(-2, -1))
    torch.testing.assert_close(power, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(frequency_responses(kernels, grid), expected.sqrt())
    assert spectrum_frequencies(grid)[grid // 2] == 0
    if k == 1:
        torch.testing.assert_close(power, power[:, :1, :1].expand_as(power))


def test_power_spectra_need_a_grid_as_large_as_the_kernel():
    with pytest.raises(ValueError, match='grid=2'):
        kernel_power_spectra(torch.randn(1, 2, 2, 3, 3), 2)


def test_radial_profile_averages_rings():
    grid = 10
    freq = spectrum_frequencies(grid)
    radius = torch.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
    ring = torch.round(radius * grid)
    maps = torch.stack([ring * 2.0, torch.ones(grid, grid)])
    radii, profiles = radial_profile(maps)
    rings = int(ring.max()) + 1
    torch.testing.assert_close(radii, torch.arange(rings, dtype=torch.float64) / grid)
    torch.testing.assert_close(profiles[0], torch.arange(rings, dtype=torch.float64) * 2)
    torch.testing.assert_close(profiles[1], torch.ones(rings, dtype=torch.float64))


def randomized_layer(randomize, cin=24, cout=32, k=3, **options):
    layer = FDConv(cin, cout, k, padding=k // 2, kernel_num=8, **options)
    randomize(layer, seed=1)
    return layer.eval()


@pytest.mark.parametrize(
    'size, options',
    [((13, 22), {}), ((16, 9), dict(fbm_cfg=dict(spatial_group=2, lowfreq_att=True)))],
)
def test_band_weights_have_the_feature_map_size(randomize, size, options):
    layer = randomized_layer(randomize, **options)
    x = torch.randn(2, 24, *size)
    record = inspect_input(layer, x)
    fbm = layer.FBM
    groups, bands = fbm.spatial_group, len(fbm.freq_weight_conv_list)
    assert record.input_size == size
    assert record.bands.shape == (2, groups, bands, *size)
    for band, conv in enumerate(fbm.freq_weight_conv_list):  # SPEC section 6: 2 sigmoid(conv_i x)
        logits = F.conv2d(x, conv.weight, conv.bias, padding=1, groups=groups)
        torch.testing.assert_close(record.bands[:, :, band], torch.sigmoid(logits) * 2)
    assert len(band_ranges(fbm.k_list, fbm.lowfreq_att)) == bands


def test_band_weights_stay_at_the_input_size_of_a_strided_layer(randomize):
    layer = FDConv(24, 32, 3, stride=2, padding=1, kernel_num=8, use_fbm_for_stride=True)
    randomize(layer)
    x = torch.randn(1, 24, 15, 20)
    with torch.no_grad(), record_attentions(layer) as records:
        out = layer.eval()(x)
    assert out.shape[-2:] == (8, 10)
    assert records[''].bands.shape[-2:] == (15, 20)


def test_band_ranges():
    assert band_ranges((2, 4, 8)) == [(0.25, 0.5), (0.125, 0.25), (0.0625, 0.125)]
    assert band_ranges((2,), lowfreq_att=True) == [(0.25, 0.5), (0.0, 0.25)]


def test_recorded_attentions_are_the_specified_ones(randomize):
    layer = randomized_layer(randomize)
    x = torch.randn(3, 24, 10, 12)
    record = inspect_input(layer, x)
    ksm = layer.KSM_Global
    pooled = x.mean(dim=(2, 3), keepdim=True)
    hidden = ksm.relu(ksm.bn(ksm.fc(pooled)))
    torch.testing.assert_close(record.channel, torch.sigmoid(ksm.channel_fc(hidden)).flatten(1) * 2)
    torch.testing.assert_close(record.filter, torch.sigmoid(ksm.filter_fc(hidden)).flatten(1) * 2)
    spatial = torch.sigmoid(ksm.spatial_fc(hidden)).view(3, 3, 3) * 2
    torch.testing.assert_close(record.spatial, spatial)
    torch.testing.assert_close(record.group, torch.sigmoid(ksm.kernel_fc(hidden)).flatten(1) / 4)
    # KSM-local (SPEC section 5): sigmoid(Conv1d(LayerNorm(g))) * 2, (B, Cout*k*k, Cin).
    local = layer.KSM_Local
    normed = F.layer_norm(pooled.view(3, 1, 24), (24,), local.norm.weight, local.norm.bias)
    length = local.conv.weight.shape[-1]
    modulation = torch.sigmoid(F.conv1d(normed, local.conv.weight, padding=length // 2)) * 2
    flat = modulation.flatten(1)
    stats = record.local
    torch.testing.assert_close(stats.mean, flat.mean(1))
    torch.testing.assert_close(stats.std, flat.std(1))
    torch.testing.assert_close(stats.minimum, flat.amin(1))
    torch.testing.assert_close(stats.maximum, flat.amax(1))
    spatial_mean = modulation.view(3, 32, 3, 3, 24).mean(dim=(1, 4))
    torch.testing.assert_close(stats.spatial_mean, spatial_mean)


def test_attention_summary_of_a_neutral_layer_is_one():
    layer = FDConv(24, 32, 3, padding=1, kernel_num=8).eval()
    summary = attention_summary(inspect_input(layer, torch.randn(1, 24, 8, 8)))
    assert set(summary) == {'group', 'channel', 'filter', 'spatial', 'local'}
    for mean, std, low, high in summary.values():
        assert mean == pytest.approx(1.0, abs=1e-4) and std < 1e-4
        assert low <= mean <= high
    bare = FDConv(24, 32, 1, kernel_num=1, ksm_only_kernel_att=True, use_ksm_local=False).eval()
    assert attention_summary(inspect_input(bare, torch.randn(1, 24, 5, 5))) == {}


def tiny_resnet():
    cfg = dict(
        type='ResNetFDConv',
        depth=18,
        base_channels=32,
        out_indices=(0, 1),
        num_stages=2,
        strides=(1, 2),
        dilations=(1, 1),
        conv_cfg=dict(type='FDConv', kernel_num=4),
        init_cfg=None,
    )
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DET_MODELS.build(cfg).eval()


def test_recording_a_backbone_records_every_layer_and_leaves_no_hook(randomize):
    model = tiny_resnet()
    randomize(model)
    layers = fdconv_layers(model)
    assert list(layers) == [
        f'layer{stage}.{block}.conv{conv}'
        for stage in (1, 2)
        for block in (0, 1)
        for conv in (1, 2)
    ]
    with torch.no_grad(), record_attentions(model) as records:
        model(torch.randn(1, 3, 64, 48))
    assert list(records) == list(layers)
    assert records['layer1.0.conv1'].bands.shape[-2:] == (16, 12)
    assert records['layer2.1.conv2'].bands.shape[-2:] == (8, 6)
    assert records['layer2.0.conv1'].bands.shape[-2:] == (16, 12), 'its input, before stride 2'
    assert all(not layer._forward_pre_hooks for layer in layers.values())
    assert all(not layer.KSM_Global._forward_hooks for layer in layers.values())
    with pytest.raises(ValueError, match='layer9'):
        with record_attentions(model, ['layer9.0.conv1']):
            pass


def test_swin_ffn_layers_record_tokens_without_bands(randomize):
    cfg = dict(
        type='SwinTransformerFDConv',
        embed_dims=32,
        depths=(1, 1),
        num_heads=(1, 2),
        out_indices=(0, 1),
        strides=(4, 2),
        conv_cfg=dict(type='FDConv', kernel_num=8),
    )
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = DET_MODELS.build(cfg).eval()
    randomize(model)
    layers = fdconv_layers(model)
    assert all(isinstance(layer, FDConvLinear) for layer in layers.values())
    with torch.no_grad(), record_attentions(model) as records:
        model(torch.randn(2, 3, 32, 64))
    record = records['stages.0.blocks.0.ffn.layers.0.0']
    assert record.input_size == (8 * 16, 1) and record.bands is None
    assert record.group.shape == (2, 8) and record.spatial is None
    assert record.local.spatial_mean.shape == (2, 1, 1)
    kernels = group_kernels(layers['stages.1.blocks.0.ffn.layers.1'])
    assert kernels.shape == (8, 64, 256, 1, 1)
    assert default_layer_names(layers) == [
        'stages.0.blocks.0.ffn.layers.1',
        'stages.1.blocks.0.ffn.layers.1',
    ]


def test_layer_selection():
    model = tiny_resnet()
    layers = fdconv_layers(model)
    assert default_layer_names(layers) == ['layer1.1.conv2', 'layer2.1.conv2']
    assert select_layer_names(layers, ['layer2.*', 'layer1.0.conv1']) == [
        'layer1.0.conv1',
        'layer2.0.conv1',
        'layer2.0.conv2',
        'layer2.1.conv1',
        'layer2.1.conv2',
    ]
    with pytest.raises(ValueError, match="'layer3.\\*' matches no active FDConv layer"):
        select_layer_names(layers, ['layer3.*'])
