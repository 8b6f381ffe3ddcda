"""SegFormer's Mix Transformer (MiT) backbone with FDConv in its MixFFNs, for mmseg.

In the chosen stages the two 1x1 convs of every block's MixFFN (``ffn.layers[0]``, embed ->
hidden, and ``ffn.layers[4]``, hidden -> embed) are rebuilt with ``conv_cfg``. The 3x3
depth-wise positional conv (``ffn.layers[1]``, ``groups == hidden``) stays plain, as the
layer's rules require (active FDConv needs ``groups=1``); patch embeddings, attention and
norms stay plain too. The modules keep their places, so the state dict keeps mmseg's MiT
layout: ``layers.{i}.1.{j}.ffn.layers.{0,4}`` hold ``dft_weight``, ``bias``, ``KSM_Global.*``
and ``KSM_Local.*`` instead of ``weight`` and ``bias``; every other key is the base's.
"""

import math
from functools import partial
from typing import Any, Dict, Optional, Sequence

from mmseg.models.backbones import MixVisionTransformer
from torch import nn

from ...layers import FDConv
from .fdconv_backbone import FDConvBackboneMixin, init_spectrum_as_spatial, rebuild_conv

# Indices of the pointwise convs in mmseg's MixFFN.layers
# (fc1, pe_conv, activation, dropout, fc2, dropout).
FFN_POINTWISE = (0, 4)


class MixVisionTransformerFDConv(FDConvBackboneMixin, MixVisionTransformer):
    """mmseg ``MixVisionTransformer`` (SegFormer) with FDConv as the MixFFN pointwise convs.

    Chen et al., "Frequency Dynamic Convolution for Dense Image Prediction", CVPR 2025.
    mmseg's MiT has no ``frozen_stages``; this class adds it (stage ``i`` is
    ``layers[i]``: patch embedding, blocks and norm), and ``need_grad_list`` keeps the
    KSM/FBM parameters of frozen stages trainable, as for the ResNet and Swin backbones.

    Args:
        conv_cfg (dict | None): Config of the MixFFN 1x1 convs, e.g.
            ``dict(type='FDConv', kernel_num=64)``; None keeps plain convs. Defaults to None.
        fdconv_stages (Sequence[int] | None): 0-based stages with FDConv; None means all.
            Defaults to None.
        need_grad_list (Sequence[str]): Parameters whose name contains one of these stay
            trainable inside frozen stages. Defaults to ('KSM', 'FBM').
        frozen_stages (int): Number of leading stages to freeze (no gradients, eval mode);
            -1 or 0 freezes none. Defaults to -1.
        **kwargs: Every argument of the base ``MixVisionTransformer`` (embed_dims,
            num_layers, num_heads, with_cp, init_cfg, ...).

    Example:
        >>> import torch
        >>> model = MixVisionTransformerFDConv(
        ...     embed_dims=32, num_stages=2, num_layers=(1, 1), num_heads=(1, 2),
        ...     patch_sizes=(7, 3), strides=(4, 2), sr_ratios=(2, 1), out_indices=(0, 1),
        ...     conv_cfg=dict(type='FDConv', kernel_num=8))
        >>> [tuple(out.shape) for out in model(torch.rand(1, 3, 64, 64))]
        [(1, 32, 16, 16), (1, 64, 8, 8)]
    """

    def __init__(
        self,
        *args: Any,
        conv_cfg: Optional[Dict[str, Any]] = None,
        fdconv_stages: Optional[Sequence[int]] = None,
        need_grad_list: Sequence[str] = ('KSM', 'FBM'),
        frozen_stages: int = -1,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if conv_cfg is not None and not isinstance(conv_cfg, dict):
            raise TypeError(f'conv_cfg must be a dict or None, got {conv_cfg!r}')
        stages = tuple(range(self.num_stages))
        if fdconv_stages is not None:
            fdconv_stages = tuple(fdconv_stages)
            if not all(isinstance(i, int) and i in stages for i in fdconv_stages):
                raise ValueError(
                    f'fdconv_stages={list(fdconv_stages)!r}: each entry must be a stage index '
                    f'in {list(stages)} (num_stages={self.num_stages}), or pass None for all'
                )
        if (
            isinstance(frozen_stages, bool)
            or not isinstance(frozen_stages, int)
            or not -1 <= frozen_stages <= self.num_stages
        ):
            raise ValueError(
                f'frozen_stages={frozen_stages!r} must be an int from -1 (none) to '
                f'num_stages={self.num_stages}'
            )
        if isinstance(need_grad_list, str):
            raise TypeError(
                f'need_grad_list must be a sequence of names, e.g. ["KSM", "FBM"], '
                f'got the string {need_grad_list!r}'
            )
        self.conv_cfg = conv_cfg
        self.fdconv_stages = stages if fdconv_stages is None else fdconv_stages
        self.need_grad_list = tuple(need_grad_list)
        self.frozen_stages = frozen_stages
        if conv_cfg is not None:
            for index in self.fdconv_stages:
                for block in self.layers[index][1]:
                    ffn_layers = block.ffn.layers
                    for position in FFN_POINTWISE:
                        ffn_layers[position] = rebuild_conv(ffn_layers[position], conv_cfg)
        self._init_fdconv()

    def init_weights(self) -> None:
        """The base's init, keeping the FDConv layers' neutral attention heads.

        Without ``init_cfg`` mmseg's MiT draws every ``nn.Conv2d`` from
        ``N(0, 2 / fan_out)``: that reaches the heads' inner convs, not ``dft_weight``.
        Here the heads are reset to neutral and the spectral weight is the spectrum of a
        kernel drawn as MiT draws it. With ``init_cfg`` (e.g. ``Pretrained``) mmengine
        calls each FDConv's own ``init_weights`` before loading.
        """
        super().init_weights()
        if self.init_cfg is not None:
            return
        for module in self.modules():
            if isinstance(module, FDConv) and module.fdconv_active:
                module.init_weights()
                if module.convert_param:
                    std = math.sqrt(2.0 / (math.prod(module.kernel_size) * module.out_channels))
                    init_spectrum_as_spatial(module, partial(nn.init.normal_, mean=0.0, std=std))

    def _freeze_stages(self) -> None:
        for index in range(max(self.frozen_stages, 0)):
            self._freeze(self.layers[index])

    def train(self, mode: bool = True) -> 'MixVisionTransformerFDConv':
        """``nn.Module.train``, keeping frozen stages in eval mode."""
        super().train(mode)
        if mode:
            self._freeze_stages()
        return self
