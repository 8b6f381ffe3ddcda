"""Shape-only frequency helpers of FDConv: weight groups, band masks, kernel <-> spectrum.

Everything here depends on shapes alone and is computed on the CPU, once, whatever the
default device (``with torch.device('cuda')``: the frequency groups must come from the CPU
sort, docs/spec.md section 4): the results are cached, and a layer looks them up instead of
rebuilding them at every forward.
See docs/spec.md sections 4, 6 and 7.
"""

from functools import lru_cache
from typing import Optional, Tuple

import torch
from torch import Tensor

from .helpers import IntOrPair, to_pair


def signed_frequency_index(n: int) -> Tensor:
    """Integer frequencies ``n * fftfreq(n)`` in FFT order: ``0, 1, ..., -1``.

    Returns:
        Tensor: (n,) int64.
    """
    index = torch.arange(n, device='cpu')
    return torch.where(index < (n + 1) // 2, index, index - n)


FREQUENCY_ORDERS = ('original', 'stable', 'exact')


def frequency_radius_order(rows: int, cols: int, order: str = 'original') -> Tensor:
    """``rfft2`` positions of a ``rows x cols`` matrix sorted by radius, lowest first.

    ``'original'``: the float32 radius ``torch.norm((fftfreq(rows), rfftfreq(cols)))``
    sorted by torch's default (unstable) CPU sort, exactly as the original code ranks it
    (on the CPU, whatever the layer's device): the groups of the released checkpoints. That
    sort's tie order is deterministic (the same under torch 1.11 and 2.13, docs/spec.md section 4).
    ``'stable'``: the same radius, sorted stably (ties in row-major order): the default
    of fdconv-mm 0.1, which models trained with it need.
    ``'exact'``: the integer key ``(a * cols)^2 + (c * rows)^2`` of docs/spec.md section 4
    (``a = rows * fftfreq(rows)``, ``c = 0 .. cols // 2``), sorted stably: exact radii,
    identical on every machine, for new models. It differs from ``'stable'`` where float32
    rounding reorders near-ties (0.2 % of the positions of a 64 -> 64 3x3 layer).

    Returns:
        Tensor: (rows * (cols // 2 + 1), ) int64, flat row-major positions.
    """
    if order == 'exact':
        row_freq = signed_frequency_index(rows)
        col_freq = torch.arange(cols // 2 + 1, device='cpu')
        radius = (row_freq[:, None] * cols) ** 2 + (col_freq[None, :] * rows) ** 2
    else:
        grid = torch.meshgrid(
            torch.fft.fftfreq(rows, dtype=torch.float32, device='cpu'),
            torch.fft.rfftfreq(cols, dtype=torch.float32, device='cpu'),
            indexing='ij',
        )
        radius = torch.norm(torch.stack(grid, dim=-1), dim=-1)
    return torch.sort(radius.flatten(), stable=order != 'original').indices


@lru_cache(maxsize=None)
def frequency_group_index(rows: int, cols: int, num_groups: int, order: str = 'original') -> Tensor:
    """Frequency group of every ``rfft2`` position of a ``rows x cols`` matrix.

    The positions, ordered by :func:`frequency_radius_order`, are cut into
    ``num_groups`` consecutive chunks sized as ``torch.tensor_split`` does: group 0 holds
    the lowest frequencies. The cached tensor is shared: do not modify it.

    Returns:
        Tensor: (rows, cols // 2 + 1) int64 with values in ``[0, num_groups)``.
    """
    ranked = frequency_radius_order(rows, cols, order)
    size, extra = divmod(ranked.numel(), num_groups)
    chunk_sizes = torch.full((num_groups,), size, device='cpu')
    chunk_sizes[:extra] += 1
    group = torch.empty_like(ranked)
    group[ranked] = torch.repeat_interleave(torch.arange(num_groups, device='cpu'), chunk_sizes)
    return group.view(rows, cols // 2 + 1)


@lru_cache(maxsize=256)
def lowpass_masks(height: int, width: int, k_list: Tuple[float, ...]) -> Tensor:
    """FBM low-pass masks ``M_i`` on the ``rfft2`` grid of an ``height x width`` map.

    ``M_i[u, v] = max(|fftfreq(H)[u]|, rfftfreq(W)[v]) < t_i`` with the exact frequencies
    rounded to float32 and ``t_i = float32(0.5 / k_i + 1e-8)``, the original's threshold.

    Returns:
        Tensor: (len(k_list), H, W // 2 + 1) bool.
    """
    row_freq = (signed_frequency_index(height).abs().double() / height).float()
    col_freq = (torch.arange(width // 2 + 1, device='cpu').double() / width).float()
    radius = torch.maximum(row_freq[:, None], col_freq[None, :])
    thresholds = torch.tensor([0.5 / k + 1e-8 for k in k_list], dtype=torch.float32, device='cpu')
    return radius[None] < thresholds[:, None, None]


@lru_cache(maxsize=256)
def band_masks(
    height: int, width: int, k_list: Tuple[float, ...], device: Optional[torch.device] = None
) -> Tensor:
    """Spectral masks of the FBM bands: ``high_1 ... high_n`` then ``low_n``.

    ``high_i = low_{i-1} - low_i`` (``low_0 = x``) is linear in the spectrum, so each band
    is one masked inverse FFT: mask ``M_{i-1} - M_i`` with ``M_0 = 1``, and ``M_n`` last.

    Returns:
        Tensor: (len(k_list) + 1, H, W // 2 + 1) float32 on ``device``.
    """
    lowpass = lowpass_masks(height, width, k_list).float()
    passes = torch.cat([torch.ones_like(lowpass[:1]), lowpass])
    return torch.cat([passes[:-1] - passes[1:], passes[-1:]]).to(device)


def kernel_to_matrix(kernel: Tensor) -> Tensor:
    """The weight matrix of docs/spec.md section 4: (..., Cout, Cin, kh, kw) ->
    (..., Cout*kh, Cin*kw), row ``co*kh + i``, column ``ci*kw + j`` (a copy unless the
    layout allows a view)."""
    *lead, out_channels, in_channels, kernel_h, kernel_w = kernel.shape
    matrix = kernel.transpose(-3, -2)
    return matrix.reshape(*lead, out_channels * kernel_h, in_channels * kernel_w)


def matrix_to_kernel(matrix: Tensor, kernel_size: IntOrPair) -> Tensor:
    """Inverse of :func:`kernel_to_matrix`, a permuted view:
    (..., Cout*kh, Cin*kw) -> (..., Cout, Cin, kh, kw)."""
    *lead, rows, cols = matrix.shape
    kernel_h, kernel_w = to_pair(kernel_size)
    return matrix.reshape(*lead, rows // kernel_h, kernel_h, cols // kernel_w, kernel_w).transpose(
        -3, -2
    )


def kernel_to_spectrum(weight: Tensor, param_ratio: int = 1) -> Tensor:
    """Convert a spatial conv weight to FDConv's ``dft_weight`` (docs/spec.md section 7).

    The weight is laid out as the ``(Cout*kh, Cin*kw)`` matrix (:func:`kernel_to_matrix`),
    transformed with ``rfft2`` in (at least) float32 and divided by ``min(Cin, Cout) // 2``.

    Args:
        weight (Tensor): (Cout, Cin, kh, kw).
        param_ratio (int): Number of copies ``P``. Defaults to 1.

    Returns:
        Tensor: (P, Cout*kh, Cin*kw // 2 + 1, 2), real and imaginary parts, contiguous.
    """
    out_channels, in_channels = weight.shape[:2]
    matrix = kernel_to_matrix(weight)
    fft_dtype = torch.promote_types(matrix.dtype, torch.float32)
    spectrum = torch.view_as_real(torch.fft.rfft2(matrix.to(fft_dtype)))
    spectrum = spectrum / (min(out_channels, in_channels) // 2)
    return spectrum.unsqueeze(0).repeat(param_ratio, 1, 1, 1).contiguous()


def spectrum_to_kernel(
    spectrum: Tensor, out_channels: int, in_channels: int, kernel_size: IntOrPair
) -> Tensor:
    """Inverse of the layout of :func:`kernel_to_spectrum`, without its scaling.

    Args:
        spectrum (Tensor): complex, (B, Cout*kh, Cin*kw // 2 + 1).

    Returns:
        Tensor: real, (B, Cout, Cin, kh, kw).
    """
    kernel_h, kernel_w = to_pair(kernel_size)
    rows, cols = out_channels * kernel_h, in_channels * kernel_w
    return matrix_to_kernel(torch.fft.irfft2(spectrum, s=(rows, cols)), kernel_size)
