"""Frequency band modulation (FBM) of FDConv: spatially varying weights per frequency band.

The input is split into ``len(k_list)`` high bands and one low band with exact low-pass
masks (``frequency.lowpass_masks``); each band is scaled by a spatial map predicted from
the input.
The parameter name ``freq_weight_conv_list`` is the original's, for its checkpoints.
See docs/spec.md section 6.
"""

import itertools
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from . import real_fft, reference
from .helpers import is_exporting
from .ksm import HEAD_INIT_STD

FBM_ACTS = ('sigmoid', 'tanh', 'softmax')


class FrequencyBandModulation(nn.Module):
    """Re-weight the frequency bands of a feature map, pixel by pixel.

    ``FBM(x) = sum_i w_i * high_i + (w_{n+1} * low_n if lowfreq_att else low_n)`` with
    ``w_i = act(conv_i(x))``; with ``G > 1`` channel group ``j`` is scaled by map ``j``.
    The FFTs run in (at least) float32; the output has the input's dtype.

    Args:
        in_channels (int): ``C``, divisible by ``spatial_group``.
        k_list (Sequence[float]): Low-pass cut-offs ``0.5 / k``. Defaults to (2, 4, 8).
        lowfreq_att (bool): Also weight the low band. Defaults to False.
        act (str): 'sigmoid' (``2 * sigmoid``), 'tanh' (``1 + tanh``) or 'softmax'
            (over the ``G`` maps, times ``G``). Defaults to 'sigmoid'.
        spatial_kernel (int): Odd kernel size of the weight convs. Defaults to 3.
        spatial_group (int): ``G``, weight maps per band. Defaults to 1.
        device, dtype: Factory arguments of the parameters, as ``nn.Conv2d``'s.
    """

    def __init__(
        self,
        in_channels: int,
        k_list: Sequence[float] = (2, 4, 8),
        lowfreq_att: bool = False,
        act: str = 'sigmoid',
        spatial_kernel: int = 3,
        spatial_group: int = 1,
        device: Any = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        self.k_list = tuple(k_list)
        self.lowfreq_att = lowfreq_att
        self.act = act
        self.spatial_group = spatial_group
        num_weighted = len(self.k_list) + int(lowfreq_att)
        self.freq_weight_conv_list = nn.ModuleList(
            nn.Conv2d(
                in_channels,
                spatial_group,
                spatial_kernel,
                padding=spatial_kernel // 2,
                groups=spatial_group,
                device=device,
                dtype=dtype,
            )
            for _ in range(num_weighted)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Neutral init: every band weight starts at 1."""
        for conv in self.freq_weight_conv_list:
            nn.init.normal_(conv.weight, std=HEAD_INIT_STD)
            nn.init.zeros_(conv.bias)

    def stacked_conv(self) -> Tuple[Tensor, Tensor]:
        """The ``n`` weight convs as one: weight (G*n, C/G, s, s) and bias (G*n,).

        They see the same input, so they run as one conv whose output channel
        ``j * n + i`` is channel ``j`` of conv ``i``: each group stays contiguous.
        """
        convs = self.freq_weight_conv_list
        weight = torch.stack([conv.weight for conv in convs], dim=1).flatten(0, 1)
        bias = torch.stack([conv.bias for conv in convs], dim=1).flatten()
        return weight, bias

    def modulate(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """FBM with the stacked weight convs given: (B, C, H, W) -> (B, C, H, W)."""
        settings = (self.k_list, self.act, self.spatial_group)
        # Viewed here, not in the autograd function: an in-place op may then follow.
        return BandModulation.apply(x, weight, bias, settings)[0].view_as(x)

    def forward(self, x: Tensor, backend: Optional[Any] = None) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W).

        Args:
            x (Tensor): (B, C, H, W).
            backend: Run :func:`.reference.fbm` with this transform backend
                (``reference.TORCH_FFT`` or ``reference.REAL_DFT``), as FDConv's reference
                composition does; None picks the path itself: the export path under an
                export, the definition under ``torch.jit.trace``, else the fast path.
        """
        if backend is None and is_exporting():
            backend = reference.REAL_DFT
        if backend is None and torch.jit.is_tracing():
            backend = reference.TORCH_FFT
        if backend is not None:
            return reference.fbm(self, x, backend)
        return self.modulate(x, *self.stacked_conv())

    def forward_as_specified(self, x: Tensor) -> Tensor:
        """docs/spec.md section 6 as it reads (:func:`.reference.fbm` with ``torch.fft``):
        ``rfft2``, ``n + 1`` masked ``irfft2``, one conv per band.

        What ``torch.jit.trace`` records (FLOP counters count the definition's work,
        scoped to the convs' modules); the same function as :meth:`forward`.
        """
        return reference.fbm(self, x, reference.TORCH_FFT)

    def combine_bands(self, x: Tensor, bands: Tensor) -> Tensor:
        """``sum_i w_i * band_i`` with the band weights predicted from ``x``.

        Args:
            x (Tensor): (B, C, H, W), the input the weight convs see.
            bands (Tensor): (B, n + 1, C, H, W), ``high_1 ... high_n`` then ``low_n``.

        Returns:
            Tensor: (B, C, H, W) in x's dtype.
        """
        batch, channels, height, width = x.shape
        bands = bands.view(batch, bands.shape[1], self.spatial_group, -1, height, width)
        weights = torch.stack(
            [_activate(conv(x), self.act) for conv in self.freq_weight_conv_list], dim=1
        )
        out = (bands[:, : weights.shape[1]] * weights.unsqueeze(3)).sum(1)
        if weights.shape[1] < bands.shape[1]:
            out = out + bands[:, -1]
        return out.view(batch, channels, height, width).to(x.dtype)


class BandModulation(torch.autograd.Function):
    """FBM's output from its input and stacked weight convs, with a hand-written backward.

    With ``low_0 = x`` and ``w_{n+1} = 1`` (or the low band's weight),
    ``sum_i w_i * (low_{i-1} - low_i) + w_{n+1} * low_n`` regroups as
    ``w_1 * x + sum_i (w_{i+1} - w_i) * low_i``: ``n`` low-pass maps instead of ``n + 1``
    bands, the weight differences taken on the small maps. Each ``low_i = L_i(x)`` is an
    orthogonal projection (ortho FFTs, symmetric mask), so the input gradient through the
    bands is ``w_1 * g + sum_i L_i((w_{i+1} - w_i) * g)``: the projections again, never a
    full-size complex inverse as autograd's ``rfft`` backward.

    ``apply(x, weight, bias, (k_list, act, G))``: x (B, C, H, W), the stacked convs of
    :meth:`FrequencyBandModulation.stacked_conv`. Returns the output (B, G, C/G, H, W) in
    x's dtype, then the band weights and the ``low_i`` (kept for the backward pass, not
    differentiable). The maps are computed in (at least) float32, autocast or not.
    """

    @staticmethod
    def forward(
        x: Tensor, weight: Tensor, bias: Tensor, settings: Tuple[Tuple[float, ...], str, int]
    ) -> Tuple[Tensor, ...]:
        k_list, act, groups = settings
        dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            features = x.to(dtype)
            logits = _weight_logits(features, weight.to(dtype), bias.to(dtype), groups)
            weights = _activate(logits, act)  # (B, G, n, H, W)
            lows = lowpass_features(features, k_list)
            steps = weights.unsqueeze(3)  # broadcast over the channels of a group
            grouped = features.view(*steps.shape[:2], -1, *features.shape[-2:])
            out = grouped * steps[:, :, 0]
            for index, low in enumerate(lows):
                out.addcmul_(_weight_step(steps, index), low.view_as(grouped))
        return (out.to(x.dtype), weights, *lows)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Tuple[Tensor, ...]) -> None:
        x, weight, bias, ctx.settings = inputs
        ctx.mark_non_differentiable(*output[1:])
        ctx.save_for_backward(x, weight, bias, *output[1:])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor, *_: Any) -> Tuple[Optional[Tensor], ...]:
        x, weight, bias, weights, *lows = ctx.saved_tensors
        k_list, act, groups = ctx.settings
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        dtype = weights.dtype
        with torch.autocast(x.device.type, enabled=False):
            features = x.to(dtype)
            steps = weights.unsqueeze(3)
            shape = (*steps.shape[:2], -1, *x.shape[-2:])
            grad = grad_output.to(dtype).view(shape)
            # out = w_1 x + sum_i (w_{i+1} - w_i) low_i: per pixel and group, the channel
            # sums of grad * x and grad * low_i give the band weights' gradients.
            dots = [(grad * t.view(shape)).sum(2) for t in (features, *lows)]
            grad_weights = [dots[i] - dots[i + 1] for i in range(len(lows))]
            if weights.shape[2] > len(lows):
                grad_weights.append(dots[-1])
            grad_logits = _activate_backward(weights, torch.stack(grad_weights, dim=2), act)
            grad_x, grad_weight, grad_bias = _weight_logits_backward(
                grad_logits, features, weight.to(dtype), (needs_x, needs_weight, needs_bias)
            )
            if needs_x:
                bands = (
                    (grad * _weight_step(steps, i)).view_as(features) for i in range(len(lows))
                )
                through_bands = lowpass_sum(bands, k_list)
                through_bands.view(shape).addcmul_(grad, steps[:, :, 0])
                grad_x = through_bands.add_(grad_x).to(x.dtype)
        return (
            grad_x,
            grad_weight.to(weight.dtype) if needs_weight else None,
            grad_bias.to(bias.dtype) if needs_bias else None,
            None,
        )


def _weight_taps(weight: Tensor, groups: int) -> Tensor:
    """The stacked convs' weight (G*n, C/G, s, s) as (G, s*s*n, C/G), row ``(i*s + j)*n + m``."""
    maps, group_channels, size, _ = weight.shape
    taps = weight.view(groups, maps // groups, group_channels, size * size).permute(0, 3, 1, 2)
    return taps.reshape(groups, size * size * (maps // groups), group_channels)


def _tap_windows(size: int, height: int, width: int):
    """Per kernel tap ``(i, j)`` of an ``s x s`` 'same' conv: the output window it reaches
    and the window of its tap map that lands there (slices of rows and columns)."""
    for i, j in itertools.product(range(size), repeat=2):
        rows = _shifted(i - size // 2, height)
        cols = _shifted(j - size // 2, width)
        yield i, j, (rows[0], cols[0]), (rows[1], cols[1])


def _shifted(shift: int, length: int) -> Tuple[slice, slice]:
    """Output positions ``p`` and tap positions ``p + shift`` both within ``length``."""
    count = max(0, length - abs(shift))
    out_start, tap_start = max(0, -shift), max(0, shift)
    return slice(out_start, out_start + count), slice(tap_start, tap_start + count)


def _weight_convs_as_conv(x: Tensor) -> bool:
    """Whether the weight convs run as a conv, not :func:`_weight_logits`' matmul and shifted
    sums: off the CPU (measured there only) and under ``torch.compile`` (inductor took about
    15 s longer to compile the shifted sums of one FDConv layer's training step)."""
    return x.device.type != 'cpu' or torch.compiler.is_compiling()


def _weight_logits(x: Tensor, weight: Tensor, bias: Tensor, groups: int) -> Tensor:
    """The stacked weight convs: (B, C, H, W) -> logits (B, G, n, H, W).

    A conv with so few output maps runs as one matmul of all ``s*s`` taps with the input
    (which reads it once, in its own layout) and ``s*s`` shifted sums of the small tap
    maps: several times faster here than oneDNN's conv (2 x 64 x 128^2: 3.6 -> 0.9 ms).
    """
    batch, channels, height, width = x.shape
    size = weight.shape[-1]
    if _weight_convs_as_conv(x):
        # oneDNN is several times faster on channels-last input for so few output maps.
        features = x.contiguous(memory_format=torch.channels_last)
        logits = F.conv2d(features, weight, bias, padding=size // 2, groups=groups)
        return logits.view(batch, groups, -1, height, width)
    taps = _weight_taps(weight, groups)
    maps = taps.shape[1] // (size * size)
    flat = x.reshape(batch, groups, channels // groups, height * width)
    products = torch.matmul(taps, flat).view(batch, groups, size, size, maps, height, width)
    logits = bias.view(1, groups, maps, 1, 1).expand(batch, -1, -1, height, width).clone()
    for i, j, out_window, tap_window in _tap_windows(size, height, width):
        logits[..., out_window[0], out_window[1]] += products[
            :, :, i, j, :, tap_window[0], tap_window[1]
        ]
    return logits


def _weight_logits_backward(
    grad: Tensor, x: Tensor, weight: Tensor, needs: Tuple[bool, bool, bool]
) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """Gradients of :func:`_weight_logits`' ``x``, ``weight`` and ``bias`` (None where not
    needed) from the logits' ``grad`` (B, G, n, H, W)."""
    needs_x, needs_weight, needs_bias = needs
    batch, groups, maps, height, width = grad.shape
    size = weight.shape[-1]
    if _weight_convs_as_conv(x):
        return torch.ops.aten.convolution_backward(
            grad.flatten(1, 2).contiguous(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
            weight,
            [weight.shape[0]],
            [1, 1],
            [size // 2] * 2,
            [1, 1],
            False,
            [0, 0],
            groups,
            list(needs),
        )
    grad_x = grad_weight = grad_bias = None
    if needs_x or needs_weight:
        grad_products = grad.new_zeros(batch, groups, size, size, maps, height, width)
        for i, j, out_window, tap_window in _tap_windows(size, height, width):
            grad_products[:, :, i, j, :, tap_window[0], tap_window[1]] = grad[
                ..., out_window[0], out_window[1]
            ]
        grad_products = grad_products.view(batch, groups, size * size * maps, height * width)
        flat = x.reshape(batch, groups, -1, height * width)
        if needs_x:
            taps = _weight_taps(weight, groups)
            grad_x = torch.matmul(taps.transpose(1, 2), grad_products).view_as(x)
        if needs_weight:
            grad_taps = torch.matmul(grad_products, flat.transpose(2, 3)).sum(0)
            grad_taps = grad_taps.view(groups, size * size, maps, -1).permute(0, 2, 3, 1)
            grad_weight = grad_taps.reshape(weight.shape)
    if needs_bias:
        grad_bias = grad.sum((0, 3, 4)).flatten()
    return grad_x, grad_weight, grad_bias


def _activate(logits: Tensor, act: str) -> Tensor:
    """Band weights from logits (B, G, ...); softmax runs over the ``G`` maps."""
    if act == 'tanh':
        return 1 + torch.tanh(logits)
    if act == 'softmax':
        return logits.softmax(dim=1) * logits.shape[1]
    return torch.sigmoid(logits) * 2


def _activate_backward(weights: Tensor, grad: Tensor, act: str) -> Tensor:
    """Gradient of the logits from that of the band weights ``w = act(logits)``."""
    if act == 'tanh':  # w = 1 + tanh: dw = 1 - tanh^2 = w (2 - w)
        return grad * weights * (2 - weights)
    if act == 'softmax':  # w = G softmax: dl = w (g - sum_j w_j g_j / G)
        return weights * (grad - (weights * grad).mean(dim=1, keepdim=True))
    return grad * weights * (1 - weights / 2)  # w = 2 sigmoid


def _weight_step(weights: Tensor, index: int) -> Tensor:
    """``w_{i+1} - w_i`` for ``low_i`` (0-based ``index``); ``w_{n+1} = 1`` if absent."""
    upper = weights[:, :, index + 1] if index + 1 < weights.shape[2] else 1.0
    return upper - weights[:, :, index]


def _bases(x: Tensor, k_list: Tuple[float, ...]) -> real_fft.BandBases:
    """The low-pass projections of x's size (built once per size outside ``torch.compile``,
    whose sizes may be symbolic)."""
    height, width = x.shape[-2:]
    if torch.compiler.is_compiling():
        return real_fft.band_bases(height, width, k_list, x.dtype, x.device)
    return real_fft.cached_band_bases(height, width, k_list, x.dtype, x.device)


def lowpass_features(x: Tensor, k_list: Tuple[float, ...]) -> List[Tensor]:
    """``irfft2(rfft2(x) * M_i, s=(H, W))`` (ortho) for each low-pass mask ``M_i``.

    Each is a real projection onto the mask's kept frequencies
    (:func:`.real_fft.lowpass_maps`): MatMuls with the ``r`` kept cosines and sines per
    axis, ``r`` at most about ``n / 2``. Faster here than the FFTs, also at 128 x 128 maps
    (6.3 against 9.6 ms for 2 x 64 x 128 x 128 and ``k_list`` (2, 4, 8)).

    Args:
        x (Tensor): (B, C, H, W), float32 or float64.

    Returns:
        list[Tensor]: ``len(k_list)`` maps (B, C, H, W).
    """
    return real_fft.lowpass_maps(x, k_list, _bases(x, k_list))


def lowpass_sum(maps: Iterable[Tensor], k_list: Tuple[float, ...]) -> Tensor:
    """``sum_i irfft2(rfft2(maps[i]) * M_i)`` (ortho): one synthesis for all.

    Args:
        maps (Iterable[Tensor]): ``len(k_list)`` maps (B, C, H, W), float32 or float64,
            consumed one at a time (a generator keeps one alive).

    Returns:
        Tensor: (B, C, H, W).
    """
    maps = iter(maps)
    first = next(maps)
    return real_fft.lowpass_maps_sum(itertools.chain([first], maps), _bases(first, k_list))
