"""ConvNeXt with FDConv in the pointwise layers of its blocks, for mmdet and mmseg.

mmdet's and mmseg's ConvNeXt configs take the backbone from mmpretrain
(``type='mmpretrain.ConvNeXt'``), whose 1.2 line cannot be imported beside the pinned stack (it
imports torchvision). :class:`ConvNeXtFDConv` is therefore a ConvNeXt of its own, written to
mmpretrain 1.2's architecture, arguments and state-dict layout, so that mmpretrain's ImageNet
checkpoints load key for key and mmdet's/mmseg's ``LearningRateDecayOptimizerConstructor``
(which reads the ``backbone.downsample_layers`` / ``backbone.stages`` names) works unchanged::

    downsample_layers.0.{0,1}     stem: 4x4/4 conv, LayerNorm2d
    downsample_layers.{i}.{0,1}   LayerNorm2d, 2x2/2 conv (i >= 1)
    stages.{i}.{j}.depthwise_conv   7x7 depth-wise conv (plain)
    stages.{i}.{j}.norm             LayerNorm over channels
    stages.{i}.{j}.pointwise_conv1  C -> 4C (FDConv in ``fdconv_stages``)
    stages.{i}.{j}.pointwise_conv2  4C -> C (FDConv in ``fdconv_stages``)
    stages.{i}.{j}.gamma            layer scale (C,)
    norm{i}                         LayerNorm2d of each output stage

An FDConv pointwise layer holds ``dft_weight``, ``bias``, ``KSM_Global.*`` and ``KSM_Local.*``
instead of ``weight`` and ``bias``. The depth-wise conv, the stem and the downsampling convs stay
plain: FDConv's own rules (``use_fdconv_if_k_in=(1, 3)``, ``groups == 1``) leave them out.
"""

from functools import partial
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as checkpoint
from mmcv.cnn import build_activation_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule, ModuleList, Sequential
from torch import Tensor, nn

from ...layers import FDConv
from .fdconv_backbone import (
    FDConvBackboneMixin,
    fdconv_linear_like,
    init_spectrum_as_spatial,
    rebuild_conv,
)

ARCH_SETTINGS: Dict[str, Dict[str, List[int]]] = {
    'atto': dict(depths=[2, 2, 6, 2], channels=[40, 80, 160, 320]),
    'femto': dict(depths=[2, 2, 6, 2], channels=[48, 96, 192, 384]),
    'pico': dict(depths=[2, 2, 6, 2], channels=[64, 128, 256, 512]),
    'nano': dict(depths=[2, 2, 8, 2], channels=[80, 160, 320, 640]),
    'tiny': dict(depths=[3, 3, 9, 3], channels=[96, 192, 384, 768]),
    'small': dict(depths=[3, 3, 27, 3], channels=[96, 192, 384, 768]),
    'base': dict(depths=[3, 3, 27, 3], channels=[128, 256, 512, 1024]),
    'large': dict(depths=[3, 3, 27, 3], channels=[192, 384, 768, 1536]),
    'xlarge': dict(depths=[3, 3, 27, 3], channels=[256, 512, 1024, 2048]),
    'huge': dict(depths=[3, 3, 27, 3], channels=[352, 704, 1408, 2816]),
}

# mmpretrain's default init: truncated normal (std 0.02) linears and convs, unit LayerNorms.
DEFAULT_INIT_CFG = (
    dict(type='TruncNormal', layer=['Conv2d', 'Linear'], std=0.02, bias=0.0),
    dict(type='Constant', layer=['LayerNorm'], val=1.0, bias=0.0),
)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channels-first map (mmpretrain's ``LN2d``).

    Args:
        num_channels (int): ``C``.
        **kwargs: As ``nn.LayerNorm`` (``eps``, ``elementwise_affine``, ...).
    """

    def __init__(self, num_channels: int, **kwargs: Any) -> None:
        super().__init__(num_channels, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        x = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return x.permute(0, 3, 1, 2).contiguous()


def _norm_options(norm_cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """``nn.LayerNorm`` options of ``norm_cfg`` (only ``type='LN2d'`` is defined)."""
    options = dict(norm_cfg)
    norm_type = options.pop('type', None)
    if norm_type != 'LN2d':
        raise ValueError(f"norm_cfg type={norm_type!r} is not supported: use type='LN2d'")
    options.setdefault('eps', 1e-5)  # mmpretrain's build_norm_layer default
    return options


class ConvNeXtBlock(BaseModule):
    """A ConvNeXt block: 7x7 depth-wise conv, LayerNorm, C -> 4C -> C pointwise MLP, layer
    scale, drop path, residual.

    Args:
        channels (int): ``C``.
        norm_options (dict): ``nn.LayerNorm`` options of the block's norm.
        act_cfg (dict): Activation between the pointwise layers.
        mlp_ratio (float): Hidden width ``int(mlp_ratio * C)``.
        linear_pw_conv (bool): Pointwise layers as ``nn.Linear`` over channels-last tokens
            (True) or as 1x1 convs (False).
        drop_path_rate (float): Stochastic depth rate.
        layer_scale_init_value (float): Initial ``gamma``; 0 means no layer scale.
        conv_cfg (dict | None): FDConv options of the pointwise layers; None keeps them plain.
        with_cp (bool): Recompute the block in the backward pass to save memory.
    """

    def __init__(
        self,
        channels: int,
        norm_options: Dict[str, Any],
        act_cfg: Dict[str, Any],
        mlp_ratio: float,
        linear_pw_conv: bool,
        drop_path_rate: float,
        layer_scale_init_value: float,
        conv_cfg: Optional[Dict[str, Any]],
        with_cp: bool,
    ) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.linear_pw_conv = linear_pw_conv
        hidden = int(mlp_ratio * channels)
        self.depthwise_conv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        if linear_pw_conv:
            self.norm: nn.Module = nn.LayerNorm(channels, **norm_options)
            pointwise = [nn.Linear(channels, hidden), nn.Linear(hidden, channels)]
            if conv_cfg is not None:
                pointwise = [fdconv_linear_like(layer, conv_cfg) for layer in pointwise]
        else:
            self.norm = LayerNorm2d(channels, **norm_options)
            pointwise = [nn.Conv2d(channels, hidden, 1), nn.Conv2d(hidden, channels, 1)]
            if conv_cfg is not None:
                pointwise = [rebuild_conv(layer, conv_cfg) for layer in pointwise]
        self.pointwise_conv1 = pointwise[0]
        self.act = build_activation_layer(dict(act_cfg))
        self.pointwise_conv2 = pointwise[1]
        self.gamma = (
            nn.Parameter(torch.full((channels,), float(layer_scale_init_value)))
            if layer_scale_init_value > 0
            else None
        )
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def _residual(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W), the branch before layer scale and drop path."""
        x = self.depthwise_conv(x)
        if not self.linear_pw_conv:
            return self.pointwise_conv2(self.act(self.pointwise_conv1(self.norm(x))))
        batch, channels, height, width = x.shape
        # (B, H*W, C) tokens: nn.Linear and FDConvLinear (which pools KSM per image) alike.
        tokens = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        tokens = self.pointwise_conv2(self.act(self.pointwise_conv1(self.norm(tokens))))
        return tokens.reshape(batch, height, width, channels).permute(0, 3, 1, 2)

    def _inner_forward(self, x: Tensor) -> Tensor:
        residual = self._residual(x)
        if self.gamma is not None:
            residual = residual.mul(self.gamma.view(1, -1, 1, 1))
        return x + self.drop_path(residual)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if self.with_cp and torch.is_grad_enabled():
            return checkpoint.checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


def _resolve_arch(arch: Union[str, Mapping[str, Sequence[int]]]) -> Dict[str, List[int]]:
    if isinstance(arch, str):
        if arch not in ARCH_SETTINGS:
            raise ValueError(f'arch={arch!r} is not defined: use one of {sorted(ARCH_SETTINGS)}')
        return {key: list(value) for key, value in ARCH_SETTINGS[arch].items()}
    if not isinstance(arch, Mapping) or set(arch) != {'depths', 'channels'}:
        raise ValueError(
            f'arch={arch!r}: give a name ({sorted(ARCH_SETTINGS)}) or a dict with exactly '
            "the keys 'depths' and 'channels'"
        )
    depths, channels = list(arch['depths']), list(arch['channels'])
    if len(depths) != len(channels) or not depths:
        raise ValueError(
            f'arch depths={depths} and channels={channels} must be non-empty and of one length'
        )
    return dict(depths=depths, channels=channels)


def _resolve_indices(name: str, indices: Union[int, Sequence[int]], num_stages: int) -> List[int]:
    """0-based stage indices; negative ones count from the end."""
    values = [indices] if isinstance(indices, int) else list(indices)
    resolved = []
    for index in values:
        if not isinstance(index, int) or not -num_stages <= index < num_stages:
            raise ValueError(
                f'{name}={indices!r}: each index must be an int in [{-num_stages}, {num_stages})'
            )
        resolved.append(index % num_stages)
    return resolved


class ConvNeXtFDConv(FDConvBackboneMixin, BaseModule):
    """ConvNeXt (mmpretrain 1.2's ``ConvNeXt`` v1) with FDConv pointwise layers.

    Liu et al., "A ConvNet for the 2020s", CVPR 2022; FDConv: Chen et al., "Frequency
    Dynamic Convolution for Dense Image Prediction", CVPR 2025. In the stages chosen by
    ``fdconv_stages`` the two pointwise layers of every block are built from ``conv_cfg``:
    :class:`~fdconv_mm.layers.FDConvLinear` (a 1x1 FDConv over the channels-last tokens of
    each image) with ``linear_pw_conv=True``, a 1x1 FDConv otherwise. ConvNeXt V2's GRN is
    not included.

    Args:
        arch (str | dict): 'atto', 'femto', 'pico', 'nano', 'tiny', 'small', 'base', 'large',
            'xlarge', 'huge', or ``dict(depths=[...], channels=[...])``. Defaults to 'tiny'.
        in_channels (int): Image channels. Defaults to 3.
        stem_patch_size (int): Kernel size and stride of the stem conv. Defaults to 4.
        norm_cfg (dict): LayerNorm config; only ``type='LN2d'`` (with ``eps``).
            Defaults to ``dict(type='LN2d', eps=1e-6)``.
        act_cfg (dict): Activation of the blocks. Defaults to ``dict(type='GELU')``.
        linear_pw_conv (bool): Pointwise layers as linears over tokens. Defaults to True.
        drop_path_rate (float): Largest stochastic depth rate (linear over the blocks).
            Defaults to 0.
        layer_scale_init_value (float): Initial layer scale; 0 disables it.
            Defaults to 1e-6.
        out_indices (int | Sequence[int]): Stages whose (normalized) output is returned;
            negative values count from the end. Defaults to -1.
        frozen_stages (int): Freeze the first ``frozen_stages`` stages and their downsampling
            layers (eval mode, no gradient) except ``need_grad_list`` parameters.
            Defaults to 0.
        gap_before_final_norm (bool): Average-pool each output before its norm, returning
            (B, C) vectors (classification); detection and segmentation use False.
            Defaults to True.
        with_cp (bool): Gradient checkpointing of every block. Defaults to False.
        conv_cfg (dict | None): FDConv options of the pointwise layers, e.g.
            ``dict(type='FDConv', kernel_num=64)``; None keeps them plain (mmpretrain's
            ConvNeXt). Defaults to None.
        fdconv_stages (Sequence[int] | None): 0-based stages with FDConv; None means all.
            Defaults to None.
        need_grad_list (Sequence[str]): Parameters whose name contains one of these stay
            trainable inside frozen stages. Defaults to ('KSM', 'FBM').
        init_cfg (dict | list | None): None means mmpretrain's default (truncated normal
            std 0.02 on convs and linears, which active FDConv layers get as the weight
            their ``dft_weight`` is made from; LayerNorms 1 and 0). Defaults to None.

    Example:
        >>> import torch
        >>> model = ConvNeXtFDConv(
        ...     arch=dict(depths=[1, 1], channels=[32, 64]), out_indices=(0, 1),
        ...     gap_before_final_norm=False, conv_cfg=dict(type='FDConv', kernel_num=8))
        >>> [tuple(out.shape) for out in model(torch.rand(1, 3, 64, 64))]
        [(1, 32, 16, 16), (1, 64, 8, 8)]
    """

    arch_settings = ARCH_SETTINGS

    def __init__(
        self,
        arch: Union[str, Mapping[str, Sequence[int]]] = 'tiny',
        in_channels: int = 3,
        stem_patch_size: int = 4,
        norm_cfg: Optional[Dict[str, Any]] = None,
        act_cfg: Optional[Dict[str, Any]] = None,
        linear_pw_conv: bool = True,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        out_indices: Union[int, Sequence[int]] = -1,
        frozen_stages: int = 0,
        gap_before_final_norm: bool = True,
        with_cp: bool = False,
        conv_cfg: Optional[Dict[str, Any]] = None,
        fdconv_stages: Optional[Sequence[int]] = None,
        need_grad_list: Sequence[str] = ('KSM', 'FBM'),
        init_cfg: Optional[Union[Dict[str, Any], List[Dict[str, Any]]]] = None,
    ) -> None:
        default_init = [dict(entry) for entry in DEFAULT_INIT_CFG]
        super().__init__(init_cfg=default_init if init_cfg is None else init_cfg)
        self.default_init = init_cfg is None
        settings = _resolve_arch(arch)
        self.depths, self.channels = settings['depths'], settings['channels']
        self.num_stages = len(self.depths)
        self.out_indices = _resolve_indices('out_indices', out_indices, self.num_stages)
        if isinstance(frozen_stages, bool) or frozen_stages not in range(self.num_stages + 1):
            raise ValueError(
                f'frozen_stages={frozen_stages!r} must be an int in [0, {self.num_stages}]'
            )
        self.frozen_stages = frozen_stages
        self.fdconv_stages = (
            None
            if fdconv_stages is None
            else tuple(_resolve_indices('fdconv_stages', fdconv_stages, self.num_stages))
        )
        self.gap_before_final_norm = gap_before_final_norm
        self.conv_cfg = conv_cfg
        self.need_grad_list = tuple(need_grad_list)
        norm_options = _norm_options(dict(type='LN2d', eps=1e-6) if norm_cfg is None else norm_cfg)
        act_cfg = dict(type='GELU') if act_cfg is None else act_cfg

        self.downsample_layers = ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(
                        in_channels, self.channels[0], stem_patch_size, stride=stem_patch_size
                    ),
                    LayerNorm2d(self.channels[0], **norm_options),
                )
            ]
        )
        for i in range(1, self.num_stages):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm2d(self.channels[i - 1], **norm_options),
                    nn.Conv2d(self.channels[i - 1], self.channels[i], 2, stride=2),
                )
            )
        # Stochastic depth grows linearly over all blocks, as in mmpretrain.
        rates = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        self.stages = ModuleList()
        first_block = 0
        for i, (depth, channels) in enumerate(zip(self.depths, self.channels)):
            stage_cfg = conv_cfg if self.fdconv_stages is None or i in self.fdconv_stages else None
            blocks = [
                ConvNeXtBlock(
                    channels,
                    norm_options,
                    act_cfg,
                    mlp_ratio=4.0,
                    linear_pw_conv=linear_pw_conv,
                    drop_path_rate=rates[first_block + j],
                    layer_scale_init_value=layer_scale_init_value,
                    conv_cfg=stage_cfg,
                    with_cp=with_cp,
                )
                for j in range(depth)
            ]
            first_block += depth
            self.stages.append(Sequential(*blocks))
            if i in self.out_indices:
                self.add_module(f'norm{i}', LayerNorm2d(channels, **norm_options))
        self._init_fdconv()

    def init_weights(self) -> None:
        """mmengine's init (``init_cfg``), after giving active FDConv layers the default
        init's truncated-normal weight: mmengine's initializers cannot reach ``dft_weight``,
        and a ``Pretrained`` entry overwrites it afterwards."""
        if self.default_init and not self._is_init:
            for module in self.modules():
                if isinstance(module, FDConv) and module.fdconv_active and module.convert_param:
                    init_spectrum_as_spatial(module, partial(nn.init.trunc_normal_, std=0.02))
        super().init_weights()

    def forward(self, x: Tensor) -> tuple:
        """(B, Cin, H, W) -> one (B, C_i, H / 2^(i+2), W / 2^(i+2)) map per ``out_indices``
        entry ((B, C_i) with ``gap_before_final_norm``)."""
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(self.downsample_layers[i](x))
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}')
                if self.gap_before_final_norm:
                    outs.append(norm(x.mean((-2, -1), keepdim=True)).flatten(1))
                else:
                    outs.append(norm(x))
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            self._freeze(self.downsample_layers[i])
            self._freeze(self.stages[i])

    def train(self, mode: bool = True) -> 'ConvNeXtFDConv':
        """``nn.Module.train``, then the frozen stages back to eval mode."""
        super().train(mode)
        self._freeze_stages()
        return self
