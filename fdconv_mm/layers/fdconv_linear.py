"""FDConvLinear: FDConv as an ``nn.Linear`` over tokens (a 1x1 FDConv)."""

from typing import Any

from torch import Tensor

from .fdconv import FDConv


class FDConvLinear(FDConv):
    """``nn.Linear`` replacement: a 1x1 FDConv over the tokens of each sample.

    The tokens ``(B, L, Cin)`` are laid out as a ``(B, Cin, L, 1)`` map: a 1x1 conv and the
    KSM's per-sample mean over the tokens do not depend on their spatial layout, so this
    equals FDConv on the ``(B, Cin, H, W)`` token map. FBM, which needs that 2-D layout, is
    refused. Loading an ``nn.Linear`` state dict converts its weight.

    Args:
        in_features (int): ``Cin``.
        out_features (int): ``Cout``.
        bias (bool): As ``nn.Linear``. Defaults to True.
        **options: FDConv options (see :class:`FDConv`).

    Example:
        >>> import torch
        >>> linear = FDConvLinear(96, 384, kernel_num=64)
        >>> tuple(linear(torch.rand(2, 49, 96)).shape)
        (2, 49, 384)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **options: Any):
        super().__init__(in_features, out_features, 1, bias=bias, **options)
        if self.fdconv_active and self.FBM is not None:
            raise ValueError(
                'FDConvLinear runs on token sequences and cannot use FBM: remove 1 from '
                f'use_fbm_if_k_in (got {options.get("use_fbm_if_k_in")!r})'
            )

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, L, Cin) -> (B, L, Cout)."""
        if tokens.dim() != 3 and self.fdconv_active:
            # A (B, Cin) batch would otherwise read as one sample's tokens, its per-sample
            # attention pooled over the batch.
            raise ValueError(
                f'FDConvLinear expects tokens (B, L, {self.in_channels}), got '
                f'{tuple(tokens.shape)}; its attention is per sample, over the L tokens'
            )
        token_map = tokens.transpose(1, 2).unsqueeze(-1)
        return super().forward(token_map).squeeze(-1).transpose(1, 2)
