"""The four experiment configs build their models, train one step and predict."""

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.structures import PixelData

import fdconv_mm  # noqa: F401  (registers FDConv and the backbones)
from fdconv_mm import FDConv

CONFIGS = Path(__file__).parents[2] / 'configs'
MAIN_CONFIGS = [
    'faster_rcnn/faster-rcnn_r50-fdconv_fpn_1x_coco.py',
    'mask_rcnn/mask-rcnn_r50-fdconv_fpn_adamw-1x_coco.py',
    'upernet/upernet_r50-fdconv_4xb4-160k_ade20k-512x512.py',
    'upernet/upernet_swin-t-fdconv_8xb2-160k_ade20k-512x512.py',
]


def detection_batch(size=96):
    from mmdet.testing import demo_mm_inputs

    return demo_mm_inputs(
        batch_size=1, image_shapes=[(3, size, size)], num_items=[3], num_classes=80, with_mask=True
    )


def segmentation_batch(size=128, batch_size=2):
    """Two images: UPerNet's pooling module normalizes over the batch."""
    from mmseg.structures import SegDataSample

    inputs, samples = [], []
    for _ in range(batch_size):
        sample = SegDataSample(
            metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size))
        )
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, size, size)))
        samples.append(sample)
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8))
    return dict(inputs=inputs, data_samples=samples)


def build_model(cfg):
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    registry = DET_MODELS if cfg.default_scope == 'mmdet' else SEG_MODELS
    return registry.build(cfg.model)


@pytest.mark.slow
@pytest.mark.parametrize('config', MAIN_CONFIGS)
def test_config_trains_one_step_and_predicts(config):
    cfg = Config.fromfile(CONFIGS / config)
    assert cfg.custom_imports['imports'] == ['fdconv_mm']
    assert cfg.model.backbone.conv_cfg == dict(type='FDConv', kernel_num=64)
    assert cfg.model.backbone.need_grad_list == ['KSM', 'FBM']
    assert cfg.model.backbone.init_cfg.checkpoint.startswith('pretrained/')
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        init_default_scope(cfg.default_scope)
        model = build_model(cfg)
        assert sum(isinstance(m, FDConv) and m.fdconv_active for m in model.modules()) > 0
        batch = detection_batch() if cfg.default_scope == 'mmdet' else segmentation_batch()
        model.train()
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
        assert torch.isfinite(loss)
        model.eval()
        with torch.no_grad():
            predictions = model.test_step(batch)
    assert len(predictions) == len(batch['inputs'])
