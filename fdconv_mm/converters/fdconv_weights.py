"""Turn the spatial weights of a backbone state dict into FDConv's ``dft_weight``.

:func:`convert` is the one function behind both ways of starting from plain weights: the
``tools/convert_weights.py`` tool and the on-load conversion of the FDConv backbones. It
works on a state dict in the layout of this package's backbones (see
:mod:`.checkpoint_layouts` for torchvision, timm, mmpretrain and official files) and converts
exactly the weights that the backbone turns into active FDConv layers, by the layer's own
rule; a linear weight ``(Cout, Cin)`` is a 1x1 kernel.
Seeing no model, it learns the backbone's options from its arguments (``conv_cfg``, the
FDConv stages, and for a ResNet with ``dcn`` the DCN stages, whose ``conv2`` stays a DCN).
A backbone loading a plain checkpoint needs none of this: each of its active FDConv layers
converts the spatial ``weight`` it is handed (docs/spec.md section 7).
"""

import re
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Sequence

from torch import Tensor

from ..layers import is_fdconv_active, kernel_to_spectrum

MODEL_TYPES = ('resnet', 'swin', 'vit', 'convnext')
# Weights of the convs that the backbones build with conv_cfg (docs/spec.md section 8: the convs of
# every residual block, not the stem nor the downsample shortcut; Swin: the two FFN linears;
# 'vit': the two 1x1 convs of mmseg MiT's MixFFN (layers.{stage}.1.{block}.ffn.layers.0 and
# .4, around the depth-wise conv) or the two linears of mmseg ViT's FFN, which has no stages;
# ConvNeXt: the two pointwise linears of every block).
FDCONV_WEIGHT_PATTERNS = {
    'resnet': re.compile(r'^layer(?P<stage>\d+)\.\d+\.(?P<conv>conv[123])\.weight$'),
    'swin': re.compile(r'^stages\.(?P<stage>\d+)\.blocks\.\d+\.ffn\.layers\.(0\.0|1)\.weight$'),
    'vit': re.compile(
        r'^layers\.(?:(?P<stage>\d+)\.1\.\d+\.ffn\.layers\.[04]|\d+\.ffn\.layers\.(?:0\.0|1))'
        r'\.weight$'
    ),
    'convnext': re.compile(r'^stages\.(?P<stage>\d+)\.\d+\.pointwise_conv[12]\.weight$'),
}
# 'stage' in the patterns counts from 1 for ResNet (layer1..4), from 0 for the others.
STAGE_OFFSET = {'resnet': 1, 'swin': 0, 'vit': 0, 'convnext': 0}


def fdconv_options(conv_cfg: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The activity options of an FDConv ``conv_cfg`` (layer defaults where absent)."""
    conv_cfg = dict(conv_cfg or {})
    return dict(
        use_fdconv_if_c_gt=conv_cfg.get('use_fdconv_if_c_gt', 16),
        use_fdconv_if_k_in=tuple(conv_cfg.get('use_fdconv_if_k_in', (1, 3))),
        param_ratio=conv_cfg.get('param_ratio', 1),
    )


def convert(
    state_dict: Mapping[str, Tensor],
    model_type: str = 'resnet',
    conv_cfg: Optional[Mapping[str, Any]] = None,
    stages: Optional[Sequence[int]] = None,
    dcn_stages: Optional[Sequence[int]] = None,
) -> 'OrderedDict[str, Tensor]':
    """Replace every ``<prefix>.weight`` that lands in an active FDConv by ``<prefix>.dft_weight``.

    Keys that are already ``dft_weight`` and all other keys are copied unchanged, in order;
    the input is not modified.

    Args:
        state_dict (Mapping[str, Tensor]): Backbone state dict (keys without 'backbone.').
        model_type (str): One of :data:`MODEL_TYPES`: 'resnet', 'swin', 'vit' (mmseg MiT
            or ViT keys) or 'convnext' (mmpretrain ConvNeXt keys). Defaults to 'resnet'.
        conv_cfg (Mapping | None): The backbone's FDConv ``conv_cfg``; only its activity
            options and ``param_ratio`` matter. Defaults to None (layer defaults).
        stages (Sequence[int] | None): 0-based stages with FDConv (the backbone's
            ``fdconv_stages``); None means all. An mmseg ViT has no stages: it needs None.
        dcn_stages (Sequence[int] | None): ResNet only: 0-based stages whose ``conv2`` is
            a DCN (the indices where mmdet's ``stage_with_dcn`` is True); their ``conv2``
            weights are copied. Defaults to None (no DCN).

    Returns:
        OrderedDict[str, Tensor]: The converted state dict.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f'model_type={model_type!r} is not supported; allowed: {MODEL_TYPES}')
    if dcn_stages and model_type != 'resnet':
        raise ValueError(f'dcn_stages={dcn_stages!r} applies to ResNet only, not {model_type!r}')
    dcn_stages = tuple(dcn_stages or ())
    options = fdconv_options(conv_cfg)
    pattern = FDCONV_WEIGHT_PATTERNS[model_type]
    converted: OrderedDict[str, Tensor] = OrderedDict()
    for key, value in state_dict.items():
        match = pattern.match(key)
        in_stage = match is not None and _in_fdconv_stage(match, model_type, stages, dcn_stages)
        if in_stage and value.dim() in (2, 4):
            weight = value if value.dim() == 4 else value[:, :, None, None]
            out_channels, in_channels, kernel_h, kernel_w = weight.shape
            if is_fdconv_active(
                in_channels,
                out_channels,
                (kernel_h, kernel_w),
                options['use_fdconv_if_c_gt'],
                options['use_fdconv_if_k_in'],
            ):
                spectrum = kernel_to_spectrum(weight, options['param_ratio'])
                converted[key[: -len('weight')] + 'dft_weight'] = spectrum
                continue
        converted[key] = value
    return converted


def _in_fdconv_stage(
    match: 're.Match[str]',
    model_type: str,
    stages: Optional[Sequence[int]],
    dcn_stages: Sequence[int],
) -> bool:
    """Whether the weight ``match`` found lies in a stage whose layers are FDConv."""
    if match['stage'] is None:
        if stages is not None:
            raise ValueError(
                f'stages={list(stages)!r}: an mmseg ViT ({match.string}) has no stages; '
                'leave stages unset'
            )
        return True
    stage = int(match['stage']) - STAGE_OFFSET[model_type]
    if stage in dcn_stages and match['conv'] == 'conv2':
        return False
    return stages is None or stage in stages
