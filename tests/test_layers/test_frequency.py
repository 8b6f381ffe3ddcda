import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fdconv_mm.layers import frequency
from fdconv_mm.layers.frequency import (
    band_masks,
    frequency_group_index,
    kernel_to_spectrum,
    lowpass_masks,
    spectrum_to_kernel,
)

K_LIST = (2, 4, 8)


def numpy_lowpass_masks(height, width, k_list):
    rows = np.abs(np.fft.fftfreq(height)).astype(np.float32)
    cols = np.fft.rfftfreq(width).astype(np.float32)
    radius = np.maximum(rows[:, None], cols[None, :])
    return np.stack([radius < np.float32(0.5 / k + 1e-8) for k in k_list])


@pytest.mark.parametrize(
    'height,width',
    [(7, 7), (8, 8), (15, 16), (16, 15), (25, 38), (32, 64), (33, 31), (100, 152), (128, 128)],
)
def test_lowpass_masks_match_numpy(height, width):
    expected = numpy_lowpass_masks(height, width, K_LIST)
    np.testing.assert_array_equal(lowpass_masks(height, width, K_LIST).numpy(), expected)


def resized_64_masks(height, width):
    """The original's masks: computed at 64 x 64, resized nearest-neighbour."""
    masks = torch.from_numpy(numpy_lowpass_masks(64, 64, K_LIST)).float()[None]
    return F.interpolate(masks, size=(height, width // 2 + 1), mode='nearest')[0] > 0.5


@pytest.mark.parametrize(
    'height,width,differing', [(64, 64, 0), (32, 64, 0), (48, 64, 0), (128, 128, 110), (32, 32, 15)]
)
def test_masks_differ_from_original_resizing_where_spec_says(height, width, differing):
    exact = lowpass_masks(height, width, K_LIST)
    assert (exact != resized_64_masks(height, width)).sum().item() == differing


def test_thresholds_admit_exact_cutoffs_for_4_and_8_only():
    masks = lowpass_masks(16, 16, K_LIST)
    row_freq = [0, 1, 2, 3, 4]  # |f| = 0, 1/16, 2/16, 3/16, 4/16
    assert masks[0, row_freq, 0].tolist() == [True, True, True, True, False]
    assert masks[1, row_freq, 0].tolist() == [True, True, True, False, False]
    assert masks[2, row_freq, 0].tolist() == [True, True, False, False, False]


@pytest.mark.parametrize('height,width', [(8, 8), (9, 14), (32, 64)])
def test_band_masks_split_the_spectrum(height, width):
    bands = band_masks(height, width, K_LIST)
    assert bands.shape == (len(K_LIST) + 1, height, width // 2 + 1)
    torch.testing.assert_close(bands.sum(0), torch.ones(height, width // 2 + 1))
    lowpass = lowpass_masks(height, width, K_LIST).float()
    torch.testing.assert_close(bands[-1], lowpass[-1])
    torch.testing.assert_close(bands[1], lowpass[0] - lowpass[1])


def exact_radius(rows, cols):
    """Squared radius times (rows * cols)^2: exact integers."""
    row_freq = np.rint(np.fft.fftfreq(rows) * rows).astype(np.int64)
    col_freq = np.arange(cols // 2 + 1, dtype=np.int64)
    return (row_freq[:, None] * cols) ** 2 + (col_freq[None, :] * rows) ** 2


@pytest.mark.parametrize('order', frequency.FREQUENCY_ORDERS)
@pytest.mark.parametrize(
    'rows,cols,groups',
    [(192, 192, 64), (64, 128, 64), (17, 17, 4), (51, 17, 7), (96, 33, 64), (24, 24, 1)],
)
def test_frequency_groups_partition_the_spectrum(rows, cols, groups, order):
    index = frequency_group_index(rows, cols, groups, order)
    assert index.shape == (rows, cols // 2 + 1)
    counts = torch.bincount(index.flatten(), minlength=groups)
    expected = [len(chunk) for chunk in torch.tensor_split(torch.arange(index.numel()), groups)]
    assert counts.tolist() == expected
    radius = exact_radius(rows, cols)
    group = index.numpy()
    # float32 rounding may swap near-ties in the float orders, never more.
    tolerance = 0 if order == 'exact' else 1e-6 * (rows * cols) ** 2
    for g in range(groups - 1):
        assert radius[group == g].max() <= radius[group == g + 1].min() + tolerance


def test_exact_order_breaks_ties_row_major():
    rows = cols = 8
    index = frequency_group_index(rows, cols, rows * (cols // 2 + 1), 'exact')
    radius = exact_radius(rows, cols).flatten()
    expected_rank = np.lexsort((np.arange(radius.size), radius))
    ranks = np.empty_like(expected_rank)
    ranks[expected_rank] = np.arange(radius.size)
    np.testing.assert_array_equal(index.flatten().numpy(), ranks)


def test_stable_order_breaks_float_ties_row_major():
    rows = cols = 8
    index = frequency_group_index(rows, cols, rows * (cols // 2 + 1), 'stable')
    grid = np.meshgrid(
        np.fft.fftfreq(rows).astype(np.float32),
        np.fft.rfftfreq(cols).astype(np.float32),
        indexing='ij',
    )
    radius = torch.norm(torch.from_numpy(np.stack(grid, -1)), dim=-1).flatten().numpy()
    expected_rank = np.lexsort((np.arange(radius.size), radius))
    ranks = np.empty_like(expected_rank)
    ranks[expected_rank] = np.arange(radius.size)
    np.testing.assert_array_equal(index.flatten().numpy(), ranks)


def resnet50_fdconv_layers():
    """(Cout, Cin, k) of ResNet-50's 48 FDConv layers (conv1..conv3 of every bottleneck)."""
    layers, in_channels = [], 64
    for planes, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for _ in range(blocks):
            layers += [(planes, in_channels, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            in_channels = planes * 4
    return layers


RESNET50_SHAPES = sorted(set(resnet50_fdconv_layers()))
UNCACHED_GROUP_INDEX = frequency_group_index.__wrapped__


def test_original_order_differs_from_stable_as_the_original_code_measured():
    """Positions that the original's unstable sort puts in another group than a stable sort:
    SPEC section 4 and the original code on ResNet-50: 112 of 2,112 in layer1.0.conv1
    (64 -> 64 1x1), 118 of 18,624 for 64 -> 64 3x3, 5,282 of 10.4 M in all 48 layers."""
    moved = {}
    for cout, cin, k in RESNET50_SHAPES:
        original = UNCACHED_GROUP_INDEX(cout * k, cin * k, 64, 'original')
        stable = UNCACHED_GROUP_INDEX(cout * k, cin * k, 64, 'stable')
        moved[cout, cin, k] = (original != stable).sum().item()
    assert moved[64, 64, 1] == 112
    assert moved[64, 64, 3] == 118
    assert sum(moved[shape] for shape in resnet50_fdconv_layers()) == 5282
    assert 72 <= min(moved.values()) and max(moved.values()) <= 164


def test_original_groups_do_not_depend_on_the_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = [UNCACHED_GROUP_INDEX(c * k, i * k, 64, 'original') for c, i, k in RESNET50_SHAPES]
        torch.set_num_threads(4)
        multi = [UNCACHED_GROUP_INDEX(c * k, i * k, 64, 'original') for c, i, k in RESNET50_SHAPES]
    finally:
        torch.set_num_threads(threads)
    for shape, one, many in zip(RESNET50_SHAPES, single, multi):
        assert torch.equal(one, many), shape


DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize('cout,cin,k', [(64, 64, 3), (256, 64, 1), (64, 256, 1)])
def test_layer_groups_do_not_depend_on_device_or_dtype(cout, cin, k, device, dtype):
    from fdconv_mm import FDConv

    conv = FDConv(cin, cout, k, padding=k // 2, kernel_num=64).to(device=device, dtype=dtype)
    assert conv.frequency_groups.device.type == device
    expected = UNCACHED_GROUP_INDEX(cout * k, cin * k, 64, 'original')
    assert torch.equal(conv.frequency_groups.cpu(), expected)


@pytest.mark.parametrize('order', frequency.FREQUENCY_ORDERS)
def test_groups_and_masks_come_from_the_cpu_whatever_the_default_device(order):
    """``with torch.device(...)`` (e.g. 'cuda' while building a model) must not move the
    sort off the CPU, whose tie order the groups follow."""
    expected_groups = UNCACHED_GROUP_INDEX(192, 64, 64, order)
    expected_masks = lowpass_masks.__wrapped__(25, 38, K_LIST)
    with torch.device('meta'):
        groups = UNCACHED_GROUP_INDEX(192, 64, 64, order)
        masks = lowpass_masks.__wrapped__(25, 38, K_LIST)
        bands = band_masks.__wrapped__(25, 38, K_LIST)
    assert groups.device.type == masks.device.type == bands.device.type == 'cpu'
    assert torch.equal(groups, expected_groups) and torch.equal(masks, expected_masks)


def test_layers_of_one_shape_compute_their_groups_once():
    from fdconv_mm import FDConv

    frequency_group_index.cache_clear()
    first, second = (FDConv(64, 64, 3, padding=1, kernel_num=64) for _ in range(2))
    assert frequency_group_index.cache_info().misses == 1
    assert first.frequency_groups.data_ptr() == second.frequency_groups.data_ptr()


def test_frequency_groups_are_identical_across_calls():
    first = frequency_group_index(192, 192, 64).clone()
    frequency.frequency_group_index.cache_clear()
    again = frequency_group_index(192, 192, 64)
    assert again is not first
    assert torch.equal(first, again)
    assert frequency_group_index(192, 192, 64) is again  # cached


@pytest.mark.parametrize('cout,cin,k', [(8, 6, 3), (5, 7, 1), (4, 9, 3)])
def test_spectrum_round_trip(cout, cin, k):
    weight = torch.randn(cout, cin, k, k, dtype=torch.float64)
    spectrum = kernel_to_spectrum(weight, param_ratio=2)
    assert spectrum.shape == (2, cout * k, cin * k // 2 + 1, 2)
    scale = min(cout, cin) // 2
    back = spectrum_to_kernel(torch.view_as_complex(spectrum[:1] * scale), cout, cin, k)
    torch.testing.assert_close(back[0], weight)
