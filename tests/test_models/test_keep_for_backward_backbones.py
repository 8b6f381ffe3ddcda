"""``conv_cfg.keep_for_backward`` switches every FDConv layer of a backbone to the speed mode:
the same training step as the lean backbone."""

import copy

import pytest
import torch
from mmengine.config import Config

import fdconv_mm  # noqa: F401  (registers the backbones)
from fdconv_mm import FDConv
from fdconv_mm.models.backbones import ResNetFDConv, SwinTransformerFDConv


def backbones(build, randomize):
    lean = build(False)
    randomize(lean)
    keeping = build(True)
    keeping.load_state_dict(lean.state_dict())
    return lean, keeping


def fdconv_layers(model):
    return [m for m in model.modules() if isinstance(m, FDConv) and m.fdconv_active]


def training_step(model, x):
    model.train()
    outputs = model(x)
    sum(out.square().mean() for out in outputs).backward()
    return [out.detach() for out in outputs], {
        name: p.grad for name, p in model.named_parameters() if p.grad is not None
    }


@pytest.mark.parametrize(
    'build',
    [
        lambda keep: ResNetFDConv(
            depth=18,
            base_channels=32,
            frozen_stages=1,
            norm_eval=True,
            conv_cfg=dict(type='FDConv', kernel_num=8, keep_for_backward=keep),
        ),
        lambda keep: SwinTransformerFDConv(
            embed_dims=32,
            depths=(1, 1, 1, 1),
            num_heads=(1, 2, 4, 8),
            window_size=4,
            drop_path_rate=0.0,
            conv_cfg=dict(type='FDConv', kernel_num=8, keep_for_backward=keep),
        ),
    ],
    ids=['resnet18', 'swin'],
)
def test_backbone_switch_gives_the_same_step(build, randomize):
    torch.manual_seed(0)
    lean, keeping = backbones(build, randomize)
    layers = fdconv_layers(keeping)
    assert layers and all(layer.keep_for_backward for layer in layers)
    assert not any(layer.keep_for_backward for layer in fdconv_layers(lean))
    x = torch.randn(2, 3, 64, 64)
    expected_out, expected_grads = training_step(lean, x)
    actual_out, actual_grads = training_step(keeping, x)
    for actual, expected in zip(actual_out, expected_out):
        torch.testing.assert_close(actual, expected)
    assert set(actual_grads) == set(expected_grads)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(actual_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_switch_from_the_command_line_reaches_every_backbone_layer():
    """``--cfg-options model.backbone.conv_cfg.keep_for_backward=True`` on our configs."""
    from mmdet.registry import MODELS

    cfg = Config.fromfile('configs/demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py')
    cfg.merge_from_dict({'model.backbone.conv_cfg.keep_for_backward': True})
    backbone_cfg = copy.deepcopy(cfg.model.backbone)
    backbone_cfg.pop('init_cfg', None)
    backbone = MODELS.build(backbone_cfg)
    layers = fdconv_layers(backbone)
    assert layers and all(layer.keep_for_backward for layer in layers)
