import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fdconv_mm.converters import convert, convert_imagenet_checkpoint, resnet_layout, swin_layout
from fdconv_mm.layers import kernel_to_spectrum

ROOT = Path(__file__).parents[2]


def small_resnet_state():
    return {
        'conv1.weight': torch.randn(64, 3, 7, 7),
        'bn1.weight': torch.ones(64),
        'layer1.0.conv1.weight': torch.randn(64, 64, 1, 1),
        'layer1.0.conv2.weight': torch.randn(64, 64, 3, 3),
        'layer1.0.conv3.weight': torch.randn(256, 64, 1, 1),
        'layer1.0.downsample.0.weight': torch.randn(256, 64, 1, 1),
        'layer4.0.conv2.weight': torch.randn(16, 16, 3, 3),  # min(C) not > 16: stays plain
        'fc.weight': torch.randn(10, 2048),
        'fc.bias': torch.randn(10),
    }


def test_convert_turns_exactly_the_active_block_convs_into_spectra():
    source = small_resnet_state()
    snapshot = {k: v.clone() for k, v in source.items()}
    converted = convert(source, 'resnet', dict(param_ratio=2))
    assert all(torch.equal(source[k], snapshot[k]) for k in snapshot)  # input untouched
    spectral = [k for k in converted if k.endswith('dft_weight')]
    assert spectral == [
        'layer1.0.conv1.dft_weight',
        'layer1.0.conv2.dft_weight',
        'layer1.0.conv3.dft_weight',
    ]
    torch.testing.assert_close(
        converted['layer1.0.conv2.dft_weight'],
        kernel_to_spectrum(source['layer1.0.conv2.weight'], 2),
    )
    for key in ('conv1.weight', 'layer1.0.downsample.0.weight', 'layer4.0.conv2.weight'):
        assert converted[key] is source[key]
    assert convert(converted, 'resnet', dict(param_ratio=2)).keys() == converted.keys()


def test_convert_follows_the_activity_options():
    source = small_resnet_state()
    converted = convert(source, 'resnet', dict(use_fdconv_if_k_in=[3]))
    assert [k for k in converted if k.endswith('dft_weight')] == ['layer1.0.conv2.dft_weight']
    converted = convert(source, 'resnet', dict(use_fdconv_if_c_gt=8))
    assert 'layer4.0.conv2.dft_weight' in converted


def test_convert_swin_linears_and_stage_choice():
    source = {
        'stages.0.blocks.0.ffn.layers.0.0.weight': torch.randn(128, 32),
        'stages.0.blocks.0.ffn.layers.0.0.bias': torch.randn(128),
        'stages.1.blocks.0.ffn.layers.1.weight': torch.randn(64, 256),
        'stages.1.blocks.0.attn.w_msa.qkv.weight': torch.randn(192, 64),
    }
    converted = convert(source, 'swin', None, stages=[1])
    assert [k for k in converted if k.endswith('dft_weight')] == [
        'stages.1.blocks.0.ffn.layers.1.dft_weight'
    ]
    assert converted['stages.1.blocks.0.ffn.layers.1.dft_weight'].shape == (1, 64, 129, 2)


def test_unknown_model_type_is_a_clear_error():
    with pytest.raises(ValueError, match="model_type='vgg'"):
        convert({}, 'vgg')
    with pytest.raises(ValueError, match='FDConv backbones for resnet, swin, vit, convnext'):
        convert_imagenet_checkpoint({}, 'vgg')


def test_resnet_layouts():
    state = small_resnet_state()
    assert resnet_layout(state)[0] == 'torchvision/timm'
    assert resnet_layout({'module.' + k: v for k, v in state.items()})[0] == 'torchvision/timm'
    layout, kept, skipped = resnet_layout(
        {**{'backbone.' + k: v for k, v in state.items()}, 'head.fc.weight': torch.ones(1)}
    )
    assert layout == 'mmpretrain/mm*' and skipped == ['head.fc.weight'] and 'fc.weight' in kept
    timm_deep = {'conv1.0.weight': torch.ones(32, 3, 3, 3), 'conv1.1.weight': torch.ones(32)}
    timm_deep.update({'bn1.weight': torch.ones(64), 'layer1.0.conv1.weight': torch.ones(1)})
    layout, kept, _ = resnet_layout(timm_deep)
    assert layout == 'timm (deep stem)'
    assert list(kept) == [
        'stem.0.weight',
        'stem.1.weight',
        'stem.7.weight',
        'layer1.0.conv1.weight',
    ]
    with pytest.raises(ValueError, match='unrecognised resnet checkpoint layout.*blocks.0.norm'):
        resnet_layout({'blocks.0.norm.weight': torch.ones(1)})


def official_swin_state():
    return {
        'patch_embed.proj.weight': torch.randn(32, 3, 4, 4),
        'layers.0.blocks.0.attn.qkv.weight': torch.randn(96, 32),
        'layers.0.blocks.0.mlp.fc1.weight': torch.randn(128, 32),
        'layers.0.blocks.0.mlp.fc2.weight': torch.randn(32, 128),
        'layers.0.downsample.reduction.weight': torch.randn(64, 128),
        'layers.0.downsample.norm.weight': torch.randn(128),
        'norm.weight': torch.randn(64),
        'head.weight': torch.randn(10, 64),
    }


def test_swin_layouts():
    official = official_swin_state()
    layout, kept, skipped = swin_layout(official)
    assert layout == 'official/timm' and sorted(skipped) == ['head.weight', 'norm.weight']
    assert 'stages.0.blocks.0.ffn.layers.0.0.weight' in kept
    assert 'stages.0.blocks.0.attn.w_msa.qkv.weight' in kept
    assert 'patch_embed.projection.weight' in kept
    timm_new = {
        k.replace('layers.0.downsample', 'layers.1.downsample'): v for k, v in official.items()
    }
    layout, kept_new, _ = swin_layout(timm_new)
    assert layout == 'timm >= 0.9'
    assert all(torch.equal(kept_new[k], kept[k]) for k in kept)
    with pytest.raises(ValueError, match='unrecognised swin checkpoint layout'):
        swin_layout({'layer1.0.conv1.weight': torch.ones(1)})


def run_tool(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'convert_weights.py'), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_convert_weights_tool(tmp_path):
    source, target = tmp_path / 'plain.pth', tmp_path / 'out' / 'fdconv.pth'
    torch.save({'state_dict': small_resnet_state()}, source)
    flags = ['--model_type', 'resnet', '--weight_path', source, '--save_path', target]
    result = run_tool(*flags)
    assert result.returncode == 0, result.stderr
    assert 'converted to dft_weight: 3' in result.stdout
    assert 'copied:                  4' in result.stdout
    assert "skipped:                 2 ['fc.weight', 'fc.bias']" in result.stdout
    saved = torch.load(target, weights_only=True)
    assert 'layer1.0.conv2.dft_weight' in saved['state_dict']
    result = run_tool(*flags)
    assert result.returncode != 0 and 'pass --force' in result.stderr
    assert run_tool(*flags, '--force').returncode == 0
    result = run_tool('--model_type', 'vit', '--weight_path', source, '--save_path', tmp_path / 'v')
    assert result.returncode != 0 and 'unrecognised vit checkpoint layout' in result.stderr
    torch.save({'model': {'x.weight': torch.ones(1)}}, source)
    result = run_tool(*flags, '--force')
    assert result.returncode != 0 and 'unrecognised resnet checkpoint layout' in result.stderr


def test_convert_copies_the_conv2_weights_of_dcn_stages():
    source = {
        'layer1.0.conv2.weight': torch.randn(64, 64, 3, 3),
        'layer2.0.conv1.weight': torch.randn(64, 64, 1, 1),
        'layer2.0.conv2.weight': torch.randn(64, 64, 3, 3),
    }
    converted = convert(source, 'resnet', dcn_stages=[1])
    assert [k for k in converted if k.endswith('dft_weight')] == [
        'layer1.0.conv2.dft_weight',
        'layer2.0.conv1.dft_weight',
    ]
    assert converted['layer2.0.conv2.weight'] is source['layer2.0.conv2.weight']
    with pytest.raises(ValueError, match='dcn_stages=\\[1\\] applies to ResNet only'):
        convert({}, 'swin', dcn_stages=[1])
