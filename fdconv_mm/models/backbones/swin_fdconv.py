"""Swin Transformer backbones with FDConv in the FFN of their blocks, for mmdet and mmseg.

In the chosen stages the two ``nn.Linear`` layers of each block's FFN become
:class:`~fdconv_mm.layers.FDConvLinear`, a 1x1 FDConv over the tokens of each image (KSM
pools over them). The modules keep their places, so the state dict keeps the base layout:
``stages.{i}.blocks.{j}.ffn.layers.0.0.*`` (Cin -> hidden) and ``...ffn.layers.1.*``
(hidden -> Cin) hold ``dft_weight``, ``bias``, ``KSM_Global.*`` and ``KSM_Local.*`` instead
of ``weight`` and ``bias``; every other key is the base Swin's.
"""

from typing import Any, Dict, Optional, Sequence

from mmdet.models.backbones import SwinTransformer as DetSwinTransformer
from mmseg.models.backbones import SwinTransformer as SegSwinTransformer

from .fdconv_backbone import FDConvBackboneMixin, fdconv_linear_like


class SwinTransformerFDConvMixin(FDConvBackboneMixin):
    """FDConv in the FFN of an mmdet/mmseg ``SwinTransformer``.

    Args:
        conv_cfg (dict | None): FDConv options of the FFN layers, e.g.
            ``dict(type='FDConv', kernel_num=64)``; None keeps plain linears.
        fdconv_stages (Sequence[int] | None): 0-based stages with FDConv; None means all.
            Defaults to None.
        need_grad_list (Sequence[str]): Parameters whose name contains one of these stay
            trainable inside frozen stages. Defaults to ('KSM', 'FBM').
        **kwargs: Every argument of the base ``SwinTransformer``.
    """

    def __init__(
        self,
        *args: Any,
        conv_cfg: Optional[Dict[str, Any]] = None,
        fdconv_stages: Optional[Sequence[int]] = None,
        need_grad_list: Sequence[str] = ('KSM', 'FBM'),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.conv_cfg = conv_cfg
        self.fdconv_stages = None if fdconv_stages is None else tuple(fdconv_stages)
        self.need_grad_list = tuple(need_grad_list)
        if conv_cfg is not None:
            for index, stage in enumerate(self.stages):
                if self.fdconv_stages is None or index in self.fdconv_stages:
                    for block in stage.blocks:
                        layers = block.ffn.layers
                        layers[0][0] = fdconv_linear_like(layers[0][0], conv_cfg)
                        layers[1] = fdconv_linear_like(layers[1], conv_cfg)
        self._init_fdconv()

    def _freeze_stages(self) -> None:
        super()._freeze_stages()
        for i in range(1, self.frozen_stages + 1):
            self._keep_attention_trainable(self.stages[i - 1])


class SwinTransformerFDConv(SwinTransformerFDConvMixin, DetSwinTransformer):
    """mmdet ``SwinTransformer`` with FDConv FFNs (see :class:`SwinTransformerFDConvMixin`).

    Example:
        >>> import torch
        >>> model = SwinTransformerFDConv(
        ...     embed_dims=32, depths=(1, 1), num_heads=(1, 2), out_indices=(0, 1),
        ...     conv_cfg=dict(type='FDConv', kernel_num=8))
        >>> [tuple(out.shape) for out in model(torch.rand(1, 3, 64, 64))]
        [(1, 32, 16, 16), (1, 64, 8, 8)]
    """


class SegSwinTransformerFDConv(SwinTransformerFDConvMixin, SegSwinTransformer):
    """mmseg ``SwinTransformer`` with FDConv FFNs, as ``SwinTransformerFDConv``."""
