"""Recognise ImageNet checkpoint layouts and map them to the backbones' key layout.

ResNet: torchvision and timm (``conv1.weight``, ``layer1.0.conv1.weight``, ``fc.*``), timm's
deep-stem variants (``conv1.0.weight`` ... ``bn1.*`` -> ``stem.*``) and mmpretrain / mm*
models (``backbone.`` prefix). Swin: the official and timm files (``layers.0.blocks.0.mlp.fc1``;
timm >= 0.9 keeps each patch merging at the start of the next stage) through mmdet's
``swin_converter``, and mmpretrain / mm* models (``backbone.stages.0...``).
"""

import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Tuple

from torch import Tensor

StateDict = 'OrderedDict[str, Tensor]'

# timm's deep stem: conv1 = Sequential(conv, bn, act, conv, bn, act, conv), then bn1.
TIMM_DEEP_STEM = {'conv1.': 'stem.', 'bn1.': 'stem.7.'}


def unwrap_checkpoint(checkpoint: Mapping[str, Any]) -> Dict[str, Tensor]:
    """The state dict of a checkpoint: raw, or under 'state_dict' or 'model'."""
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            return dict(checkpoint[key])
    return dict(checkpoint)


def _strip(state_dict: Mapping[str, Tensor], prefix: str) -> Dict[str, Tensor]:
    if all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _backbone_part(state_dict: Mapping[str, Tensor]) -> Tuple[Dict[str, Tensor], List[str]]:
    """Keys under 'backbone.' (prefix removed), and the others, skipped."""
    kept = {k[len('backbone.') :]: v for k, v in state_dict.items() if k.startswith('backbone.')}
    return kept, [k for k in state_dict if not k.startswith('backbone.')]


def _unrecognised(model_type: str, state_dict: Mapping[str, Tensor], expected: str) -> ValueError:
    sample = ', '.join(list(state_dict)[:4])
    return ValueError(
        f'unrecognised {model_type} checkpoint layout: expected {expected}; '
        f'the file has keys like {sample}'
    )


def resnet_layout(state_dict: Mapping[str, Tensor]) -> Tuple[str, StateDict, List[str]]:
    """Map a ResNet checkpoint to mmdet/mmseg ``ResNet`` keys.

    Returns:
        tuple: layout name, backbone state dict, skipped source keys.
    """
    state_dict = _strip(state_dict, 'module.')
    if any(k.startswith('backbone.') for k in state_dict):
        kept, skipped = _backbone_part(state_dict)
        layout = 'mmpretrain/mm*'
    else:
        kept = {k: v for k, v in state_dict.items() if not k.startswith('fc.')}
        skipped = [k for k in state_dict if k.startswith('fc.')]
        layout = 'torchvision/timm'
        if 'conv1.0.weight' in kept:
            layout = 'timm (deep stem)'
            kept = {_rename_prefix(k, TIMM_DEEP_STEM): v for k, v in kept.items()}
    if not any(re.match(r'layer1\.0\.conv1\.weight$', k) for k in kept):
        raise _unrecognised(
            'resnet',
            state_dict,
            'torchvision/timm keys (layer1.0.conv1.weight, fc.weight) or mmpretrain keys '
            '(backbone.layer1.0.conv1.weight)',
        )
    return layout, OrderedDict(kept), skipped


def _rename_prefix(key: str, renames: Mapping[str, str]) -> str:
    for old, new in renames.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _timm_downsample_to_official(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """timm >= 0.9 puts stage i's patch merging at the start of stage i + 1."""
    renamed = {}
    for key, value in state_dict.items():
        match = re.match(r'layers\.(\d+)\.downsample\.(.*)', key)
        if match:
            key = f'layers.{int(match[1]) - 1}.downsample.{match[2]}'
        renamed[key] = value
    return renamed


def swin_layout(state_dict: Mapping[str, Tensor]) -> Tuple[str, StateDict, List[str]]:
    """Map a Swin checkpoint to mmdet/mmseg ``SwinTransformer`` keys.

    Returns:
        tuple: layout name, backbone state dict, skipped source keys.
    """
    from mmdet.models.backbones.swin import swin_converter

    state_dict = _strip(state_dict, 'module.')
    if any(k.startswith('backbone.stages.') for k in state_dict):
        layout = 'mmpretrain/mm*'
        kept, skipped = _backbone_part(state_dict)
    elif any(re.match(r'layers\.\d+\.blocks\.\d+\.mlp\.fc1\.weight$', k) for k in state_dict):
        layout = 'official/timm'
        source = dict(state_dict)
        if 'layers.0.downsample.reduction.weight' not in source and any(
            k.startswith('layers.1.downsample.') for k in source
        ):
            layout = 'timm >= 0.9'
            source = _timm_downsample_to_official(source)
        skipped = [k for k in source if k.startswith('head') or k.startswith('norm.')]
        source = {k: v for k, v in source.items() if k not in skipped}
        kept, _ = _backbone_part(swin_converter(source))
    elif any(k.startswith('stages.') for k in state_dict):
        layout = 'mm* backbone'
        kept, skipped = dict(state_dict), []
    else:
        raise _unrecognised(
            'swin',
            state_dict,
            'official/timm keys (layers.0.blocks.0.mlp.fc1.weight) or mmpretrain keys '
            '(backbone.stages.0.blocks.0.ffn.layers.0.0.weight)',
        )
    return layout, OrderedDict(kept), skipped


LAYOUTS = {'resnet': resnet_layout, 'swin': swin_layout}
