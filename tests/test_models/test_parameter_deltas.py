"""Parameters FDConv adds to each backbone at the paper's sizes, pinned exactly.

Each backbone is the one an experiment config builds (its ``model.backbone``, pretrained
weights left out), once with the config's FDConv ``conv_cfg`` and once with ``conv_cfg=None``,
which keeps the base's plain layers: the README's table of parameter deltas comes from here.
"""

from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import fdconv_mm  # noqa: F401  (registers the backbones)
from fdconv_mm import FDConv

CONFIGS = Path(__file__).parents[2] / 'configs'
# config: (backbone parameters with conv_cfg=None, with FDConv), above each the paper's delta.
PARAMETERS = {
    # ResNet-50: +3.6 M
    'faster_rcnn/faster-rcnn_r50-fdconv_fpn_1x_coco.py': (23_508_032, 27_155_152),
    # Swin-T: +3 M
    'mask_rcnn/mask-rcnn_swin-t-fdconv_fpn_1x_coco.py': (27_520_698, 33_547_434),
    # ConvNeXt-T: +3 M
    'mask_rcnn/mask-rcnn_convnext-t-fdconv_fpn_1x_coco.py': (27_821_472, 36_861_576),
    # MiT-B0: not reported
    'segformer/segformer_mit-b0-fdconv_8xb2-160k_ade20k-512x512.py': (3_319_392, 3_939_744),
}


def count(model):
    return sum(p.numel() for p in model.parameters())


def build_backbone(config, **overrides):
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    cfg = Config.fromfile(CONFIGS / config)
    registry = DET_MODELS if cfg.default_scope == 'mmdet' else SEG_MODELS
    backbone = dict(cfg.model.backbone, init_cfg=None, **overrides)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.build(backbone), cfg.model.backbone.conv_cfg


@pytest.mark.parametrize('config', PARAMETERS)
def test_fdconv_adds_the_pinned_number_of_parameters(config):
    plain, _ = build_backbone(config, conv_cfg=None)
    model, conv_cfg = build_backbone(config)
    assert conv_cfg == dict(type='FDConv', kernel_num=64)
    assert not any(isinstance(m, FDConv) for m in plain.modules())
    assert any(isinstance(m, FDConv) and m.fdconv_active for m in model.modules())
    assert (count(plain), count(model)) == PARAMETERS[config]
