"""Fourier transforms in real arithmetic (fdconv_mm/layers/real_fft.py), what the ONNX
export runs instead of ``torch.fft``: against ``torch.fft`` and the float32 masks."""

import numpy as np
import pytest
import torch

from fdconv_mm.layers import real_fft as ox
from fdconv_mm.layers.frequency import lowpass_masks


@pytest.mark.parametrize('n', [1, 2, 5, 12, 17, 24, 96, 134, 768])
@pytest.mark.parametrize('columns', [1, 3])
@pytest.mark.parametrize('inverse', [False, True])
def test_complex_dft_matches_fft(n: int, columns: int, inverse: bool) -> None:
    x = torch.randn(2, 3, n, columns, dtype=torch.float64)
    signal = torch.complex(x[0], x[1])
    expected = torch.fft.ifft(signal, dim=-2) * n if inverse else torch.fft.fft(signal, dim=-2)
    got = ox.complex_dft(x, inverse=inverse)
    torch.testing.assert_close(torch.complex(got[0], got[1]), expected, rtol=0, atol=1e-12 * n)
    plan = ox.radix_plan(n)
    assert int(np.prod(plan)) == n
    assert all(r <= ox.MAX_RADIX or all(r % p for p in range(2, r)) for r in plan), plan


@pytest.mark.parametrize('size', [(1, 1), (3, 1), (4, 2), (6, 6), (5, 7), (96, 72), (48, 97)])
def test_irfft2_stacked_matches_torch(size: tuple) -> None:
    rows, cols = size
    spectrum = torch.randn(2, 2, rows, cols // 2 + 1, dtype=torch.float64)
    expected = torch.fft.irfft2(torch.complex(spectrum[0], spectrum[1]), s=size)
    torch.testing.assert_close(ox.irfft2_stacked(spectrum, size), expected, rtol=0, atol=1e-13)


def test_lowpass_counts_match_the_float32_masks() -> None:
    """The integer rule equals the spec's float32 comparison, also where 0.5 / k is not
    a float32 (k = 3, 1.5: the rounded threshold admits or refuses a frequency exactly at
    it) and at the admitted ties of k = 4, 8."""
    k_list = (2, 4, 8, 3, 1.5, 1, 16, 0.75)
    for n in list(range(1, 130)) + [333, 1333]:
        rows = lowpass_masks(n, 1, k_list)[:, :, 0].sum(1)
        columns = lowpass_masks(1, n, k_list)[:, 0, :].sum(1)
        for k, kept_rows, kept_columns in zip(k_list, rows.tolist(), columns.tolist()):
            if ox._threshold(k) > 0.5:  # every frequency passes
                assert (kept_rows, kept_columns) == (n, n // 2 + 1)
                continue
            count = ox.lowpass_count(n, k)
            assert (kept_rows, kept_columns) == (2 * count - 1, count), (n, k)


@pytest.mark.parametrize('size', [(16, 16), (13, 9), (1, 5), (64, 48)])
def test_lowpass_maps_match_masked_fft(size: tuple) -> None:
    k_list = (2, 4, 8)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    masks = lowpass_masks(*size, k_list).double()
    spectrum = torch.fft.rfft2(x, norm='ortho')[:, None] * masks[:, None]
    expected = torch.fft.irfft2(spectrum, s=size, norm='ortho')
    got = torch.stack(ox.lowpass_maps(x, k_list), dim=1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
