"""FDConv as its definition reads (docs/spec.md sections 3-6), written once.

The composition (KSM global and local, FDW, FBM, the per-sample conv) is parameterised by
the Fourier transforms it runs on, its *backend*:

* :data:`TORCH_FFT`: ``torch.fft`` on complex tensors. ``FDConv.forward_as_specified``
  and ``FrequencyBandModulation.forward_as_specified`` (what ``torch.jit.trace`` records,
  so that FLOP counters count the definition's operators);
* :data:`REAL_DFT`: :mod:`.real_fft`, real arithmetic only, which every ONNX runtime
  takes: what an active layer runs under an export (:func:`.helpers.is_exporting`).

The training and inference paths (:mod:`.kernel_synthesis`, :mod:`.sample_conv`, FBM's
``BandModulation``) compute the same function with fewer passes and hand-written
gradients; the tests hold them to this composition.

The functions take the layer modules (an active ``FDConv``, a
``FrequencyBandModulation``) and read their parameters and settings.
"""

from typing import Any, Optional, Tuple

import torch
from torch import Tensor, nn

from . import real_fft
from .frequency import band_masks, kernel_to_matrix, matrix_to_kernel


def _fft_dtype(tensor: Tensor) -> torch.dtype:
    """The transforms run in float32, or float64 for float64 tensors."""
    return torch.promote_types(tensor.dtype, torch.float32)


def position_groups(groups: Tensor, kernel_num: int, param_ratio: int) -> Tensor:
    """Index into the (B, K*P) group attentions of every (copy, position): (P*N,) int64.

    Args:
        groups (Tensor): (Cout*kh, Cin*kw // 2 + 1), the frequency group of each position.
        kernel_num, param_ratio (int): ``K``, ``P``.
    """
    index = groups.reshape(-1)
    if param_ratio > 1:
        offsets = torch.arange(param_ratio, device=index.device) * kernel_num
        index = (index + offsets.view(-1, 1)).view(-1)
    return index


class TorchFFT:
    """``torch.fft`` on complex tensors; spectra are (P or B, rows, cols // 2 + 1)."""

    @staticmethod
    def spectrum(conv: nn.Module) -> Tensor:
        """The layer's Fourier weight as P complex spectra."""
        pairs = conv.fourier_weight()
        return torch.view_as_complex(pairs.to(_fft_dtype(pairs)).contiguous())

    @staticmethod
    def group_index(conv: nn.Module) -> Tensor:
        return position_groups(conv.frequency_groups, conv.kernel_num, conv.param_ratio)

    @staticmethod
    def mix(spectrum: Tensor, group_map: Optional[Tensor]) -> Tensor:
        """``sum_p S_p * map_p``: (B or 1, rows, half); ``map`` (B, P, rows, half)."""
        if group_map is None:
            return spectrum.sum(0, keepdim=True)
        mixed = spectrum * group_map
        return mixed[:, 0] if mixed.shape[1] == 1 else mixed.sum(1)

    @staticmethod
    def irfft2(mixed: Tensor, size: Tuple[int, int]) -> Tensor:
        return torch.fft.irfft2(mixed, s=size)

    @staticmethod
    def fbm_bands(x: Tensor, k_list: Tuple[float, ...]) -> Tensor:
        """FBM's bands ``high_1 ... high_n, low_n``, each one masked inverse transform:
        (B, C, H, W) -> (B, n + 1, C, H, W)."""
        height, width = x.shape[-2:]
        masks = band_masks(height, width, k_list, x.device)
        spectrum = torch.fft.rfft2(x, norm='ortho')
        return torch.fft.irfft2(
            spectrum.unsqueeze(1) * masks[:, None], s=(height, width), norm='ortho'
        )


class RealDFT:
    """:mod:`.real_fft`: complex spectra as real tensors, parts stacked first
    (2, P or B, rows, cols // 2 + 1)."""

    @staticmethod
    def spectrum(conv: nn.Module) -> Tensor:
        if conv.convert_param:
            pairs = conv.dft_weight
            # Parts first: a transpose of the weight, which runtimes fold at load.
            return pairs.to(_fft_dtype(pairs)).permute(3, 0, 1, 2)
        matrix = kernel_to_matrix(conv.weight)
        matrix = matrix.to(_fft_dtype(matrix))
        scale = min(conv.in_channels, conv.out_channels) // 2
        return (
            (real_fft.rfft2_stacked(matrix) / scale).unsqueeze(1).repeat(1, conv.param_ratio, 1, 1)
        )

    @staticmethod
    def group_index(conv: nn.Module) -> Tensor:
        # A numpy constant of the graph in the smallest integer type (an export traces
        # with fake tensors: the layer's buffer cannot be read there).
        compact = conv.export_group_index()
        return torch.from_numpy(compact).to(conv.frequency_groups.device).long()

    @staticmethod
    def mix(spectrum: Tensor, group_map: Optional[Tensor]) -> Tensor:
        if group_map is None:
            return spectrum.sum(1, keepdim=True)
        return (spectrum[:, None] * group_map).sum(2)

    @staticmethod
    def irfft2(mixed: Tensor, size: Tuple[int, int]) -> Tensor:
        return real_fft.irfft2_stacked(mixed, size)

    @staticmethod
    def fbm_bands(x: Tensor, k_list: Tuple[float, ...]) -> Tensor:
        lows = real_fft.lowpass_maps(x, k_list)
        previous = [x, *lows[:-1]]
        return torch.stack([p - low for p, low in zip(previous, lows)] + [lows[-1]], dim=1)


TORCH_FFT = TorchFFT()
REAL_DFT = RealDFT()


def fourier_kernels(conv: nn.Module, group_attention: Optional[Tensor], backend: Any) -> Tensor:
    """FDW (docs/spec.md section 4): ``irfft2(alpha * sum_p S_p * ka[p*K + group])``.

    Args:
        conv (FDConv): An active layer.
        group_attention (Tensor | None): (B, K*P), or None for a single group.
        backend: :data:`TORCH_FFT` or :data:`REAL_DFT`.

    Returns:
        Tensor: (B, Cout*kh, Cin*kw) (B is 1 without group attention) in float32
        (float64 for a float64 weight), laid out ``(co, i, ci, j)``.
    """
    spectrum = backend.spectrum(conv)
    if group_attention is None:
        mixed = backend.mix(spectrum, None) * conv.alpha
    else:
        index = backend.group_index(conv)
        attention = group_attention.to(_fft_dtype(spectrum)) * conv.alpha
        rows, half = conv.frequency_groups.shape
        group_map = torch.index_select(attention, 1, index).view(-1, conv.param_ratio, rows, half)
        mixed = backend.mix(spectrum, group_map)
    return backend.irfft2(mixed, conv.matrix_size)


def fbm(module: nn.Module, x: Tensor, backend: Any) -> Tensor:
    """FBM (docs/spec.md section 6): (B, C, H, W) -> (B, C, H, W) in x's dtype.

    Args:
        module (FrequencyBandModulation): Its weight convs and settings.
        x (Tensor): (B, C, H, W).
        backend: :data:`TORCH_FFT` or :data:`REAL_DFT`.
    """
    with torch.autocast(x.device.type, enabled=False):
        bands = backend.fbm_bands(x.to(_fft_dtype(x)), module.k_list)
    return module.combine_bands(x, bands)


def fdconv(conv: nn.Module, x: Tensor, backend: Any) -> Tensor:
    """An active FDConv (docs/spec.md sections 3-6): (B, Cin, H, W) -> (B, Cout, H', W').

    Every attention multiplies the ``(B, Cout, Cin, kh, kw)`` kernels, as the definition
    writes it; the ``B`` samples then run as one grouped conv.

    Args:
        conv (FDConv): An active layer.
        x (Tensor): (B, Cin, H, W).
        backend: :data:`TORCH_FFT` or :data:`REAL_DFT`.
    """
    batch = x.shape[0]
    kernel_h, kernel_w = conv.kernel_size
    cin, cout = conv.in_channels, conv.out_channels
    pooled = x.mean(dim=(2, 3), keepdim=True)
    channel_att, filter_att, spatial_att, group_att = conv.KSM_Global(pooled)
    with torch.autocast(x.device.type, enabled=False):
        kernels = fourier_kernels(conv, group_att, backend)
    kernel = matrix_to_kernel(kernels, conv.kernel_size)
    if conv.KSM_Local is not None:
        kernel = kernel * conv.KSM_Local(pooled, spatial_att)
    elif spatial_att is not None:
        kernel = kernel * spatial_att.view(batch, 1, 1, kernel_h, kernel_w)
    if channel_att is not None:
        kernel = kernel * channel_att.view(batch, 1, cin, 1, 1)
    if filter_att is not None:
        kernel = kernel * filter_att.view(batch, cout, 1, 1, 1)
    # Through the module (its scope in traces, for FLOP counters), on this backend.
    features = conv.FBM(x, backend) if conv.FBM is not None else x
    features = conv.conv_features(features, None, None, None)
    weight = kernel.expand(batch, -1, -1, -1, -1).reshape(batch * cout, cin, kernel_h, kernel_w)
    geometry = conv.conv_geometry
    grouped = features.reshape(1, batch * cin, *features.shape[-2:])
    out = geometry.grouped_conv(grouped, weight.to(features.dtype), conv.bias, batch)
    return out.view(batch, cout, *out.shape[-2:])
