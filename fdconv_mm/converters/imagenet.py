"""Convert a whole ImageNet checkpoint file's contents for an FDConv backbone."""

from collections import OrderedDict
from typing import Any, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from .checkpoint_layouts import LAYOUTS, StateDict, unwrap_checkpoint
from .fdconv_weights import MODEL_TYPES, convert

# Key prefix that the backbones' Pretrained init expects in a file: mmdet's and mmseg's Swin
# load 'backbone.'-prefixed keys; ResNet loads keys as torchvision writes them; mmseg's MiT
# and ViT load raw keys (mmengine's load_checkpoint, ViT's own init_weights); ConvNeXt loads
# an mmpretrain classifier's keys through init_cfg=dict(type='Pretrained', prefix='backbone.').
FILE_PREFIX = {'resnet': '', 'swin': 'backbone.', 'vit': '', 'convnext': 'backbone.'}


class ConversionSummary(NamedTuple):
    """What :func:`convert_imagenet_checkpoint` did, key by key."""

    layout: str
    converted: List[str]
    copied: List[str]
    skipped: List[str]


def convert_imagenet_checkpoint(
    checkpoint: Mapping[str, Any],
    model_type: str,
    conv_cfg: Optional[Mapping[str, Any]] = None,
    stages: Optional[Sequence[int]] = None,
    dcn_stages: Optional[Sequence[int]] = None,
) -> Tuple[StateDict, ConversionSummary]:
    """Unwrap, map to the backbone layout, and convert the FDConv weights.

    Args:
        checkpoint (Mapping): A loaded file: a raw state dict, or one under 'state_dict'
            or 'model'.
        model_type (str): One of :data:`~.fdconv_weights.MODEL_TYPES` ('resnet', 'swin',
            'vit', 'convnext').
        conv_cfg (Mapping | None): The backbone's FDConv ``conv_cfg``. Defaults to None.
        stages (Sequence[int] | None): 0-based stages with FDConv. Defaults to None (all).
        dcn_stages (Sequence[int] | None): ResNet: 0-based stages whose ``conv2`` is a DCN
            (see :func:`convert`). Defaults to None.

    Returns:
        tuple: the state dict to save (keys prefixed by ``FILE_PREFIX[model_type]``) and a
        :class:`ConversionSummary` (keys without the prefix).
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f'model_type={model_type!r} is not supported: this package has FDConv backbones '
            f'for {", ".join(MODEL_TYPES)}'
        )
    layout, backbone_state, skipped = LAYOUTS[model_type](unwrap_checkpoint(checkpoint))
    converted_state = convert(backbone_state, model_type, conv_cfg, stages, dcn_stages)
    converted = [k for k in converted_state if k not in backbone_state]
    copied = [k for k in converted_state if k in backbone_state]
    prefix = FILE_PREFIX[model_type]
    file_state = OrderedDict((prefix + k, v) for k, v in converted_state.items())
    return file_state, ConversionSummary(layout, converted, copied, skipped)
