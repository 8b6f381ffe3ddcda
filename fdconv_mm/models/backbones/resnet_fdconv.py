"""ResNet backbones with FDConv in their residual blocks, for mmdet and mmseg.

mmdet and mmseg each have their own ResNet; both get the same FDConv variant here. The base
class builds every conv plain; the convs of the residual blocks (``conv1..conv3``) are then
rebuilt with ``conv_cfg``. The stem and the downsample shortcut stay plain convs, as in the
original (``fdconv_stem`` / ``fdconv_downsample`` turn FDConv on there), so a torchvision or
mmpretrain ResNet checkpoint maps key for key: only block conv weights become ``dft_weight``.
"""

from typing import Any, Dict, Optional, Sequence

from mmdet.models.backbones import ResNet as DetResNet
from mmseg.models.backbones import ResNet as SegResNet
from torch import nn

from .fdconv_backbone import FDConvBackboneMixin, lean_frozen_norms, rebuild_convs

BLOCK_CONVS = ('conv1', 'conv2', 'conv3')


class ResNetFDConvMixin(FDConvBackboneMixin):
    """FDConv in the residual blocks of an mmdet/mmseg ``ResNet``.

    Args:
        conv_cfg (dict | None): Config of the block convs, e.g.
            ``dict(type='FDConv', kernel_num=64)``; None keeps plain convs.
        need_grad_list (Sequence[str]): Parameters whose name contains one of these stay
            trainable inside frozen stages. Defaults to ('KSM', 'FBM').
        fdconv_stem (bool): Also build the stem convs with ``conv_cfg``. Defaults to False.
        fdconv_downsample (bool): Also build the shortcut convs with ``conv_cfg``.
            Defaults to False.
        **kwargs: Every argument of the base ``ResNet`` (depth, frozen_stages, norm_eval,
            with_cp, dcn, plugins, init_cfg, ...).
    """

    def __init__(
        self,
        *args: Any,
        conv_cfg: Optional[Dict[str, Any]] = None,
        need_grad_list: Sequence[str] = ('KSM', 'FBM'),
        fdconv_stem: bool = False,
        fdconv_downsample: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, conv_cfg=None, **kwargs)
        self.conv_cfg = conv_cfg
        self.need_grad_list = tuple(need_grad_list)
        if conv_cfg is not None:
            self._build_fdconv(conv_cfg, fdconv_stem, fdconv_downsample)
        self._init_fdconv()

    def _build_fdconv(
        self, conv_cfg: Dict[str, Any], fdconv_stem: bool, fdconv_downsample: bool
    ) -> None:
        for layer_name in self.res_layers:
            for block in getattr(self, layer_name):
                rebuild_convs(block, BLOCK_CONVS, conv_cfg)
                if fdconv_downsample and block.downsample is not None:
                    rebuild_convs(block.downsample, _child_names(block.downsample), conv_cfg)
        if fdconv_stem:
            stem = self.stem if self.deep_stem else self
            rebuild_convs(stem, _child_names(stem) if self.deep_stem else ['conv1'], conv_cfg)

    def _freeze_stages(self) -> None:
        super()._freeze_stages()
        for i in range(1, self.frozen_stages + 1):
            layer = getattr(self, f'layer{i}')
            self._keep_attention_trainable(layer)
            lean_frozen_norms(layer)


def _child_names(module: nn.Module) -> list:
    return [name for name, _ in module.named_children()]


class ResNetFDConv(ResNetFDConvMixin, DetResNet):
    """mmdet ``ResNet`` with FDConv in its residual blocks (see :class:`ResNetFDConvMixin`).

    Chen et al., "Frequency Dynamic Convolution for Dense Image Prediction", CVPR 2025.

    Example:
        >>> import torch
        >>> model = ResNetFDConv(depth=18, conv_cfg=dict(type='FDConv', kernel_num=8))
        >>> [tuple(out.shape) for out in model.eval()(torch.rand(1, 3, 64, 64))]
        [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)]
    """


class ResNetV1dFDConv(ResNetFDConv):
    """mmdet ``ResNetV1d`` (deep stem, average-pool shortcut) with FDConv blocks."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(deep_stem=True, avg_down=True, **kwargs)


class SegResNetFDConv(ResNetFDConvMixin, SegResNet):
    """mmseg ``ResNet`` with FDConv in its residual blocks (see :class:`ResNetFDConvMixin`).

    Registered in mmseg's registry as ``ResNetFDConv`` (and ``ResNet_FDConv``).
    """


class SegResNetV1cFDConv(SegResNetFDConv):
    """mmseg ``ResNetV1c`` (deep stem) with FDConv blocks, as ``ResNetV1cFDConv``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(deep_stem=True, avg_down=False, **kwargs)


class SegResNetV1dFDConv(SegResNetFDConv):
    """mmseg ``ResNetV1d`` (deep stem, average-pool shortcut) with FDConv blocks."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(deep_stem=True, avg_down=True, **kwargs)
