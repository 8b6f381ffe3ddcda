"""The experiment configs build their models, train one step and predict."""

from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.structures import PixelData

import fdconv_mm  # noqa: F401  (registers FDConv and the backbones)
from fdconv_mm import FDConv

CONFIGS = Path(__file__).parents[2] / 'configs'
# Each config with the converted ImageNet file its backbone starts from.
MAIN_CONFIGS = {
    'faster_rcnn/faster-rcnn_r50-fdconv_fpn_1x_coco.py': 'resnet50_fdconv.pth',
    'mask_rcnn/mask-rcnn_r50-fdconv_fpn_adamw-1x_coco.py': 'resnet50_fdconv.pth',
    'mask_rcnn/mask-rcnn_swin-t-fdconv_fpn_1x_coco.py': 'swin_tiny_fdconv.pth',
    'mask_rcnn/mask-rcnn_convnext-t-fdconv_fpn_1x_coco.py': 'convnext_tiny_fdconv.pth',
    'upernet/upernet_r50-fdconv_4xb4-160k_ade20k-512x512.py': 'resnet50_v1c_fdconv.pth',
    'upernet/upernet_swin-t-fdconv_8xb2-160k_ade20k-512x512.py': 'swin_tiny_fdconv.pth',
    'mask2former/mask2former_r50-fdconv_8xb2-90k_cityscapes-512x1024.py': 'resnet50_fdconv.pth',
    'segformer/segformer_mit-b0-fdconv_8xb2-160k_ade20k-512x512.py': 'mit_b0_fdconv.pth',
}


def detection_batch(size=96):
    from mmdet.testing import demo_mm_inputs

    return demo_mm_inputs(
        batch_size=1, image_shapes=[(3, size, size)], num_items=[3], num_classes=80, with_mask=True
    )


def segmentation_batch(num_classes, size=128, batch_size=2):
    """Label maps of ``num_classes`` classes with an ignored (255) border, as Cityscapes has.

    Two images by default: UPerNet's pooling module normalizes over the batch.
    """
    from mmseg.structures import SegDataSample

    inputs, samples = [], []
    for _ in range(batch_size):
        sample = SegDataSample(
            metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size))
        )
        labels = torch.randint(0, num_classes, (1, size, size))
        labels[:, : size // 8] = 255
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
        inputs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8))
    return dict(inputs=inputs, data_samples=samples)


def build_model(cfg):
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    registry = DET_MODELS if cfg.default_scope == 'mmdet' else SEG_MODELS
    return registry.build(cfg.model)


def batch_for(cfg):
    """A small batch for the config's task; segmentation trains at the batch's own size
    instead of padding to the config's crop (512 x 512 or 512 x 1024)."""
    if cfg.default_scope == 'mmdet':
        return detection_batch()
    head = cfg.model.decode_head
    # Mask2Former matches queries to masks and needs no batch statistics: one image.
    batch_size = 1 if head.type == 'Mask2FormerHead' else 2
    batch = segmentation_batch(head.num_classes, batch_size=batch_size)
    cfg.model.data_preprocessor.size = tuple(batch['inputs'][0].shape[1:])
    return batch


def test_configs_start_from_their_converted_weights():
    for config, weights in MAIN_CONFIGS.items():
        cfg = Config.fromfile(CONFIGS / config)
        assert 'fdconv_mm' in cfg.custom_imports['imports'], config
        assert cfg.model.backbone.conv_cfg == dict(type='FDConv', kernel_num=64), config
        assert cfg.model.backbone.need_grad_list == ['KSM', 'FBM'], config
        init_cfg = cfg.model.backbone.init_cfg
        assert (init_cfg.type, init_cfg.checkpoint) == ('Pretrained', f'pretrained/{weights}')


@pytest.mark.slow
@pytest.mark.parametrize('config', MAIN_CONFIGS)
def test_config_trains_one_step_and_predicts(config):
    cfg = Config.fromfile(CONFIGS / config)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        init_default_scope(cfg.default_scope)
        batch = batch_for(cfg)
        model = build_model(cfg)
        assert sum(isinstance(m, FDConv) and m.fdconv_active for m in model.modules()) > 0
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
