"""Frequency band modulation (FBM) of FDConv: spatially varying weights per frequency band.

The input is split into ``len(k_list)`` high bands and one low band with exact low-pass
masks (:func:`band_masks`); each band is scaled by a spatial map predicted from the input.
The parameter name ``freq_weight_conv_list`` is the original's, for its checkpoints.
See SPEC-fdconv.md section 6.
"""

from typing import Sequence

import torch
from torch import Tensor, nn

from .frequency import band_masks
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
    """

    def __init__(
        self,
        in_channels: int,
        k_list: Sequence[float] = (2, 4, 8),
        lowfreq_att: bool = False,
        act: str = 'sigmoid',
        spatial_kernel: int = 3,
        spatial_group: int = 1,
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
            )
            for _ in range(num_weighted)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Neutral init: every band weight starts at 1."""
        for conv in self.freq_weight_conv_list:
            nn.init.normal_(conv.weight, std=HEAD_INIT_STD)
            nn.init.zeros_(conv.bias)

    def _activate(self, logits: Tensor) -> Tensor:
        if self.act == 'tanh':
            return 1 + torch.tanh(logits)
        if self.act == 'softmax':
            return logits.softmax(dim=1) * logits.shape[1]
        return torch.sigmoid(logits) * 2

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        batch, channels, height, width = x.shape
        masks = band_masks(height, width, self.k_list, x.device)
        fft_dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            spectrum = torch.fft.rfft2(x.to(fft_dtype), norm='ortho')
            bands = torch.fft.irfft2(
                spectrum.unsqueeze(1) * masks[:, None], s=(height, width), norm='ortho'
            )
        num_bands = bands.shape[1]
        bands = bands.view(batch, num_bands, self.spatial_group, -1, height, width)
        weights = torch.stack(
            [self._activate(conv(x)) for conv in self.freq_weight_conv_list], dim=1
        )
        num_weighted = weights.shape[1]
        out = (bands[:, :num_weighted] * weights.unsqueeze(3)).sum(1)
        if num_weighted < num_bands:
            out = out + bands[:, -1]
        return out.view(batch, channels, height, width).to(x.dtype)
