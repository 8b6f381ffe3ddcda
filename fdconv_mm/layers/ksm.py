"""Kernel spatial modulation (KSM) of FDConv: per-sample attentions from channel means.

The global branch predicts channel, filter, spatial and frequency-group attentions; the
local branch predicts one attention per kernel element. Module and parameter names
(``fc``, ``bn``, ``relu``, ``channel_fc``, ...) are the original's, so that its
checkpoints load. See docs/spec.md sections 3 and 5.
"""

import math
from typing import Any, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .helpers import IntOrPair, to_pair

ATTENTION_ACTS = ('sigmoid', 'tanh')
HEAD_INIT_STD = 1e-6


def attention_activation(logits: Tensor, act: str, temperature: float, att_multi: float) -> Tensor:
    """``sigmoid(z / T) * m`` or ``1 + tanh(z / T)``: 1 at ``z = 0`` for ``m = 2``."""
    if act == 'tanh':
        return 1 + torch.tanh(logits / temperature)
    return torch.sigmoid(logits / temperature) * att_multi


def local_kernel_size(in_channels: int) -> int:
    """Odd Conv1d length of KSM local: ``round(log2(Cin) / 2 + 0.5) // 2 * 2 + 1``."""
    return round(math.log2(in_channels) / 2 + 0.5) // 2 * 2 + 1


class StarReLU(nn.Module):
    """StarReLU, ``scale * relu(x) ** 2 + bias`` with learnable scalars (MetaFormer)."""

    def __init__(self, device: Any = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(1, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.scale)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * F.relu(x) ** 2 + self.bias


class KernelSpatialModulationGlobal(nn.Module):
    """Global KSM: channel, filter, spatial and group attentions of each sample.

    Hidden width ``A = max(int(Cin * reduction), 16)``; ``fc -> bn -> StarReLU`` then one
    1x1 head per attention. A head that would be constant is not created and its
    attention is returned as ``None`` (meaning 1).

    Args:
        in_channels (int): ``Cin``.
        out_channels (int): ``Cout``.
        kernel_size (int | tuple[int, int]): ``(kh, kw)``; no spatial head when
            ``kh * kw == 1``.
        num_groups (int): ``K * P`` group attentions; no head when 1.
        reduction (float): Hidden width ratio. Defaults to 0.0625.
        temperature (float): ``T`` of the channel/filter/spatial heads. Defaults to 1.0.
        kernel_temperature (float): ``Tk`` of the group head. Defaults to 1.0.
        att_multi (float): ``m``, the sigmoid scale. Defaults to 2.0.
        act (str): 'sigmoid' or 'tanh'. Defaults to 'sigmoid'.
        only_kernel_attention (bool): Create only the group head. Defaults to False.
        device, dtype: Factory arguments of the parameters, as ``nn.Conv2d``'s.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        num_groups: int,
        reduction: float = 0.0625,
        temperature: float = 1.0,
        kernel_temperature: float = 1.0,
        att_multi: float = 2.0,
        act: str = 'sigmoid',
        only_kernel_attention: bool = False,
        device: Any = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        hidden = max(int(in_channels * reduction), 16)
        self.kernel_size = to_pair(kernel_size)
        kernel_area = self.kernel_size[0] * self.kernel_size[1]
        self.num_groups = num_groups
        self.temperature = temperature
        self.kernel_temperature = kernel_temperature
        self.att_multi = att_multi
        self.act = act
        self.fc = nn.Conv2d(in_channels, hidden, 1, bias=False, **factory)
        self.bn = nn.BatchNorm2d(hidden, **factory)
        self.relu = StarReLU(**factory)
        with_heads = not only_kernel_attention
        self.channel_fc = nn.Conv2d(hidden, in_channels, 1, **factory) if with_heads else None
        self.filter_fc = nn.Conv2d(hidden, out_channels, 1, **factory) if with_heads else None
        self.spatial_fc = (
            nn.Conv2d(hidden, kernel_area, 1, **factory) if with_heads and kernel_area > 1 else None
        )
        self.kernel_fc = nn.Conv2d(hidden, num_groups, 1, **factory) if num_groups > 1 else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Neutral init: every attention starts at 1 (group attention at ``1 / (K*P)``)."""
        nn.init.kaiming_normal_(self.fc.weight, mode='fan_out', nonlinearity='relu')
        self.bn.reset_parameters()
        self.relu.reset_parameters()
        for head in (self.channel_fc, self.filter_fc, self.spatial_fc, self.kernel_fc):
            if head is not None:
                nn.init.normal_(head.weight, std=HEAD_INIT_STD)
                nn.init.zeros_(head.bias)

    def _normalize(self, hidden: Tensor) -> Tensor:
        """BatchNorm that also trains on a single sample (or none), with the running statistics.

        The statistics of one value per channel are undefined; a detector trained with one
        image per GPU must still train, so a lone sample is normalized as in eval mode and
        the running statistics are left untouched; so is an empty batch (an empty RoI
        batch), whose statistics would be NaN. This holds for every BatchNorm the layer
        may have been converted to (mmengine's ``sync_bn``, its ``_BatchNormXd``), except a
        ``SyncBatchNorm`` that gathers the samples of several processes (it takes an empty
        batch itself).
        """
        bn = self.bn
        if self.training and hidden.shape[0] <= 1 and _normalizes_samples_alone(bn):
            return F.batch_norm(
                hidden, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps
            )
        return bn(hidden)

    def forward(
        self, pooled: Tensor
    ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
        """Attentions of each sample from its channel means.

        Args:
            pooled (Tensor): (B, Cin, 1, 1).

        Returns:
            tuple: channel (B, Cin), filter (B, Cout), spatial (B, kh, kw) and group
            (B, K*P) attentions, each ``None`` where it is constant.
        """
        hidden = self.relu(self._normalize(self.fc(pooled)))
        batch = pooled.shape[0]

        def head(fc: Optional[nn.Conv2d]) -> Optional[Tensor]:
            if fc is None:
                return None
            return attention_activation(
                fc(hidden).flatten(1), self.act, self.temperature, self.att_multi
            )

        spatial = head(self.spatial_fc)
        if spatial is not None:
            spatial = spatial.view(batch, *self.kernel_size)
        kernel = None
        if self.kernel_fc is not None:
            logits = self.kernel_fc(hidden).flatten(1) / self.kernel_temperature
            if self.act == 'tanh':
                kernel = (1 + torch.tanh(logits)) / self.num_groups
            else:
                kernel = torch.sigmoid(logits) * 2 / self.num_groups
        return head(self.channel_fc), head(self.filter_fc), spatial, kernel


def _normalizes_samples_alone(bn: nn.Module) -> bool:
    """Whether a training-mode BatchNorm normalizes this process's samples by themselves."""
    if not isinstance(bn, _BatchNorm) or bn.running_mean is None:
        return False
    if isinstance(bn, nn.SyncBatchNorm) and dist.is_available() and dist.is_initialized():
        group = bn.process_group or dist.group.WORLD
        return dist.get_world_size(group) == 1
    return True


class KernelSpatialModulationLocal(nn.Module):
    """Local KSM: one attention per kernel element from a 1-D conv over channel means.

    ``LayerNorm`` over the ``Cin`` channel means, then ``Conv1d(1 -> Cout*kh*kw)`` of odd
    length ``e`` (:func:`local_kernel_size`) across the channels.

    Args:
        in_channels (int): ``Cin``.
        out_channels (int): ``Cout``.
        kernel_size (int | tuple[int, int]): ``(kh, kw)``.
        att_multi (float): ``m``, the sigmoid scale. Defaults to 2.0.
        act (str): 'sigmoid' or 'tanh'. Defaults to 'sigmoid'.
        device, dtype: Factory arguments of the parameters, as ``nn.Conv2d``'s.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        att_multi: float = 2.0,
        act: str = 'sigmoid',
        device: Any = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        length = local_kernel_size(in_channels)
        self.out_channels = out_channels
        self.kernel_size = to_pair(kernel_size)
        self.att_multi = att_multi
        self.act = act
        outputs = out_channels * self.kernel_size[0] * self.kernel_size[1]
        self.conv = nn.Conv1d(1, outputs, length, padding=(length - 1) // 2, bias=False, **factory)
        self.norm = nn.LayerNorm(in_channels, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Neutral init: a constant ``1e-6`` weight gives attentions of about 1."""
        nn.init.constant_(self.conv.weight, HEAD_INIT_STD)
        self.norm.reset_parameters()

    def normalize(self, pooled: Tensor) -> Tensor:
        """LayerNorm of the channel means: (B, Cin, 1, 1) -> (B, Cin)."""
        return self.norm(pooled.flatten(1))

    def forward(self, pooled: Tensor, spatial_attention: Optional[Tensor] = None) -> Tensor:
        """Attention of every kernel element, times the spatial attention if given.

        FDConv's own forward pass builds the same attention with :func:`local_logits`,
        directly in its kernels' layout; this is the specification's Conv1d layout.

        Args:
            pooled (Tensor): (B, Cin, 1, 1).
            spatial_attention (Tensor | None): (B, kh, kw).

        Returns:
            Tensor: (B, Cout, Cin, kh, kw), a permuted view.
        """
        batch, in_channels = pooled.shape[:2]
        logits = self.conv(self.norm(pooled.view(batch, 1, in_channels)))
        kernel_h, kernel_w = self.kernel_size
        logits = logits.view(batch, self.out_channels, kernel_h, kernel_w, in_channels)
        if self.act == 'tanh':
            attention = 1 + torch.tanh(logits)
            if spatial_attention is not None:
                attention = attention * spatial_attention.view(batch, 1, kernel_h, kernel_w, 1)
        else:
            scale = self.att_multi
            if spatial_attention is not None:
                scale = spatial_attention.view(batch, 1, kernel_h, kernel_w, 1) * scale
            attention = torch.sigmoid(logits) * scale
        return attention.permute(0, 1, 4, 2, 3)


def local_logits(normalized: Tensor, weight: Tensor, kernel_size: int) -> Tensor:
    """KSM-local's Conv1d logits laid out as FDConv's kernel matrices.

    The Conv1d (one input channel, ``Cout*kh*kw`` outputs ``(co, i, j)``, ``e`` taps over
    the ``Cin`` normalized means, zero-padded) gives its logits as ``(co, i, j, ci)``; the
    kernel matrices (``irfft2``'s output) are ``(co, i, ci, j)``. One matmul of the weight
    read as ``(Cout*kh, kw*e)`` with the small :func:`_tap_matrix` ``(B, kw*e, Cin*kw)``
    gives them in the matrices' layout directly (faster here than a dilated Conv1d over
    the means spread to ``Cin*kw`` positions: 512 -> 512 3x3 at batch 2, 11.2 -> 0.75 ms;
    as fast at batch 1).

    Args:
        normalized (Tensor): (B, Cin).
        weight (Tensor): (Cout*kh*kw, 1, e), ``e`` odd.
        kernel_size (int): ``kw``, the kernel's width.

    Returns:
        Tensor: (B, Cout*kh, Cin*kw).
    """
    taps = _tap_matrix(normalized, kernel_size, weight.shape[-1])
    # bmm of the expanded weight: torch.matmul of a matrix with a batch returned a
    # transposed product and copied it, a kernel-sized pass.
    matrix_weight = weight.view(-1, taps.shape[1]).expand(taps.shape[0], -1, -1)
    return torch.bmm(matrix_weight, taps)


def local_logits_backward(
    grad: Tensor, normalized: Tensor, weight: Tensor, kernel_size: int, needs: Tuple[bool, bool]
) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients of :func:`local_logits`'s ``normalized`` and ``weight`` from ``grad``
    (B, Cout*kh, Cin*kw); None where ``needs`` is false."""
    batch, in_channels = normalized.shape
    taps = weight.shape[-1]
    tap_matrix = _tap_matrix(normalized, kernel_size, taps)
    matrix_weight = weight.view(-1, tap_matrix.shape[1])
    grad_normalized = grad_weight = None
    if needs[0]:
        grad_taps = torch.bmm(matrix_weight.t().expand(batch, -1, -1), grad)
        grad_taps = grad_taps.view(batch, kernel_size, taps, in_channels, kernel_size)
        grad_windows = grad_taps.diagonal(dim1=1, dim2=4).sum(-1)  # (B, e, Cin)
        padding = (taps - 1) // 2
        grad_padded = grad_windows.new_zeros(batch, in_channels + 2 * padding)
        for tap in range(taps):
            grad_padded[:, tap : tap + in_channels] += grad_windows[:, tap]
        grad_normalized = grad_padded[:, padding : padding + in_channels]
    if needs[1]:
        grad_weight = torch.matmul(grad, tap_matrix.transpose(1, 2)).sum(0).view(weight.shape)
    return grad_normalized, grad_weight


def _tap_matrix(normalized: Tensor, kernel_size: int, taps: int) -> Tensor:
    """(B, Cin) -> (B, kw*e, Cin*kw): row ``j*e + t``, column ``ci*kw + j`` holds the
    zero-padded mean ``normalized[ci + t - (e - 1) // 2]`` (zero at other columns ``j``)."""
    batch, in_channels = normalized.shape
    padding = (taps - 1) // 2
    windows = F.pad(normalized, (padding, padding)).unfold(1, in_channels, 1)  # (B, e, Cin)
    eye = torch.eye(kernel_size, dtype=normalized.dtype, device=normalized.device)
    spread = windows[:, None, :, :, None] * eye[:, None, None, :]
    return spread.reshape(batch, kernel_size * taps, in_channels * kernel_size)
