"""Recognise ImageNet checkpoint layouts and map them to the backbones' key layout.

ResNet: torchvision and timm (``conv1.weight``, ``layer1.0.conv1.weight``, ``fc.*``), timm's
deep-stem variants (``conv1.0.weight`` ... ``bn1.*`` -> ``stem.*``) and mmpretrain / mm*
models (``backbone.`` prefix). Swin: the official and timm files (``layers.0.blocks.0.mlp.fc1``;
timm >= 0.9 keeps each patch merging at the start of the next stage) through mmdet's
``swin_converter``, and mmpretrain / mm* models (``backbone.stages.0...``). 'vit': mmseg's
``VisionTransformer`` and ``MixVisionTransformer`` (MiT) keys, raw or under ``backbone.``,
and the official SegFormer files (``mit_b*.pth``: ``block1.0.mlp.fc1``), mapped to mmseg's
MiT keys as mmseg's ``mit2mmseg`` tool maps them. ConvNeXt: mmpretrain keys (raw backbone
or under ``backbone.``), timm's (``stages.0.blocks.0.mlp.fc1``) and the official facebook
ones (``stages.0.0.pwconv1``), mapped to mmpretrain's ``ConvNeXt`` keys.
"""

import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch
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


# Keys that tell the 'vit' layouts apart: the first FFN weight of a block.
MIT_FFN_KEY = re.compile(r'layers\.\d+\.1\.\d+\.ffn\.layers\.0\.weight$')
VIT_FFN_KEY = re.compile(r'layers\.\d+\.ffn\.layers\.0\.0\.weight$')
SEGFORMER_FFN_KEY = re.compile(r'block\d+\.\d+\.mlp\.fc1\.weight$')
# Official SegFormer block names (after block{s}.{j}.) -> mmseg MiT's; attn.q and attn.kv
# become the one in_proj of nn.MultiheadAttention, and the MixFFN linears its 1x1 convs.
SEGFORMER_BLOCK_RENAMES = {
    'attn.proj.': 'attn.attn.out_proj.',
    'mlp.fc1.': 'ffn.layers.0.',
    'mlp.dwconv.dwconv.': 'ffn.layers.1.',
    'mlp.fc2.': 'ffn.layers.4.',
}
SEGFORMER_1X1_CONVS = ('ffn.layers.0.weight', 'ffn.layers.4.weight')


def _segformer_to_mmseg(state_dict: Mapping[str, Tensor]) -> Tuple[StateDict, List[str]]:
    """Official SegFormer keys -> mmseg ``MixVisionTransformer`` keys, and the skipped keys.

    ``patch_embed{s}`` -> ``layers.{s-1}.0`` (``proj`` -> ``projection``), ``block{s}.{j}``
    -> ``layers.{s-1}.1.{j}``, ``norm{s}`` -> ``layers.{s-1}.2``; stages count from 1 there.
    """
    kept: StateDict = OrderedDict()
    skipped = []
    for key, value in state_dict.items():
        match = re.match(r'(patch_embed|block|norm)(\d+)\.(.*)$', key)
        if match is None:
            skipped.append(key)
            continue
        kind, stage, name = match[1], int(match[2]) - 1, match[3]
        if kind == 'patch_embed':
            kept[f'layers.{stage}.0.' + _rename_prefix(name, {'proj.': 'projection.'})] = value
        elif kind == 'norm':
            kept[f'layers.{stage}.2.{name}'] = value
        else:
            block, name = name.split('.', 1)
            prefix = f'layers.{stage}.1.{block}.'
            if name.startswith('attn.kv.'):
                continue  # joined to attn.q below
            if name.startswith('attn.q.'):
                param = name[len('attn.q.') :]
                kv_key = f'{match[1]}{match[2]}.{block}.attn.kv.{param}'
                if kv_key not in state_dict:
                    raise ValueError(f'official SegFormer checkpoint: {key} has no {kv_key}')
                kept[f'{prefix}attn.attn.in_proj_{param}'] = torch.cat([value, state_dict[kv_key]])
                continue
            name = _rename_prefix(name, SEGFORMER_BLOCK_RENAMES)
            if name in SEGFORMER_1X1_CONVS and value.dim() == 2:
                value = value[:, :, None, None]
            kept[prefix + name] = value
    return kept, skipped


def vit_layout(state_dict: Mapping[str, Tensor]) -> Tuple[str, StateDict, List[str]]:
    """Map a ViT / SegFormer checkpoint to mmseg ``VisionTransformer`` or MiT keys.

    Returns:
        tuple: layout name, backbone state dict, skipped source keys.
    """
    state_dict = _strip(state_dict, 'module.')
    if any(SEGFORMER_FFN_KEY.match(k) for k in state_dict):
        kept, skipped = _segformer_to_mmseg(state_dict)
        return 'official SegFormer (mit_b*)', kept, skipped
    source = 'mmseg'
    kept, skipped = dict(state_dict), []
    if any(k.startswith('backbone.') for k in state_dict):
        source = 'mm* model'
        kept, skipped = _backbone_part(state_dict)
    if any(MIT_FFN_KEY.match(k) for k in kept):
        return f'{source} MiT', OrderedDict(kept), skipped
    if any(VIT_FFN_KEY.match(k) for k in kept):
        return f'{source} ViT', OrderedDict(kept), skipped
    raise _unrecognised(
        'vit',
        state_dict,
        'mmseg MiT keys (layers.0.1.0.ffn.layers.0.weight), mmseg ViT keys '
        "(layers.0.ffn.layers.0.0.weight), either under 'backbone.', or official SegFormer "
        "keys (block1.0.mlp.fc1.weight); map timm/official ViT files with mmseg's "
        'tools/model_converters/vit2mmseg.py first',
    )


# timm's and the official ConvNeXt keys -> mmpretrain's: a pattern matching a whole key, and
# the new key's template over the pattern's groups. {last} is the index of the last stage:
# mmpretrain keeps the final norm (before the classifier) as norm{last}, norm3 for 4 stages.
KeyRule = Tuple[str, str]
TIMM_CONVNEXT_KEYS: Sequence[KeyRule] = (
    (r'stem\.(.*)', 'downsample_layers.0.{0}'),
    (r'stages\.(\d+)\.downsample\.(.*)', 'downsample_layers.{0}.{1}'),
    (r'stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.(.*)', 'stages.{0}.{1}.depthwise_conv.{2}'),
    (r'stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc([12])\.(.*)', 'stages.{0}.{1}.pointwise_conv{2}.{3}'),
    (r'stages\.(\d+)\.blocks\.(\d+)\.(norm\..*|gamma)', 'stages.{0}.{1}.{2}'),
    (r'head\.norm\.(.*)', 'norm{last}.{0}'),
)
OFFICIAL_CONVNEXT_KEYS: Sequence[KeyRule] = (
    (r'downsample_layers\.(.*)', 'downsample_layers.{0}'),
    (r'stages\.(\d+)\.(\d+)\.dwconv\.(.*)', 'stages.{0}.{1}.depthwise_conv.{2}'),
    (r'stages\.(\d+)\.(\d+)\.pwconv([12])\.(.*)', 'stages.{0}.{1}.pointwise_conv{2}.{3}'),
    (r'stages\.(\d+)\.(\d+)\.(norm\..*|gamma)', 'stages.{0}.{1}.{2}'),
    (r'norm\.(.*)', 'norm{last}.{0}'),
)


def _rename_keys(
    state_dict: Mapping[str, Tensor], rules: Sequence[KeyRule]
) -> Tuple[StateDict, List[str]]:
    """Keys renamed by the first rule matching them whole; keys no rule matches are skipped."""
    stages = [int(m[1]) for m in map(re.compile(r'stages\.(\d+)\.').match, state_dict) if m]
    last_stage = max(stages, default=0)
    kept: StateDict = OrderedDict()
    skipped = []
    for key, value in state_dict.items():
        for pattern, template in rules:
            match = re.fullmatch(pattern, key)
            if match:
                kept[template.format(*match.groups(), last=last_stage)] = value
                break
        else:
            skipped.append(key)
    return kept, skipped


def convnext_layout(state_dict: Mapping[str, Tensor]) -> Tuple[str, StateDict, List[str]]:
    """Map a ConvNeXt checkpoint to mmpretrain ``ConvNeXt`` keys.

    Returns:
        tuple: layout name, backbone state dict, skipped source keys.
    """
    state_dict = _strip(state_dict, 'module.')
    if any(re.match(r'backbone\.stages\.\d+\.\d+\.pointwise_conv1\.', k) for k in state_dict):
        kept, skipped = _backbone_part(state_dict)
        return 'mmpretrain/mm*', OrderedDict(kept), skipped
    if any(re.match(r'stages\.\d+\.\d+\.pointwise_conv1\.', k) for k in state_dict):
        return 'mmpretrain backbone', OrderedDict(state_dict), []
    if any(re.match(r'stages\.\d+\.blocks\.\d+\.mlp\.fc1\.', k) for k in state_dict):
        return ('timm', *_rename_keys(state_dict, TIMM_CONVNEXT_KEYS))
    if any(re.match(r'stages\.\d+\.\d+\.pwconv1\.', k) for k in state_dict):
        return ('official (facebookresearch)', *_rename_keys(state_dict, OFFICIAL_CONVNEXT_KEYS))
    raise _unrecognised(
        'convnext',
        state_dict,
        "mmpretrain keys (backbone.stages.0.0.pointwise_conv1.weight, or without 'backbone.'), "
        'timm keys (stages.0.blocks.0.mlp.fc1.weight) or official keys '
        '(stages.0.0.pwconv1.weight)',
    )


LAYOUTS = {
    'resnet': resnet_layout,
    'swin': swin_layout,
    'vit': vit_layout,
    'convnext': convnext_layout,
}
