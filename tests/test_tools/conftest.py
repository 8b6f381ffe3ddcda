"""Tiny synthetic data sets and configs (mmdet and mmseg, with FDConv) for the tools' tests."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / 'tools'
NUM_IMAGES = 4
IMAGE_SIZE = 64

# RetinaNet on a ResNet-18 of 16 base channels; FDConv (8 frequency groups) in every FPN and
# head conv of 32 channels. score_thr=0 keeps the untrained model's boxes for COCO eval.
DET_CONFIG = """
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)
data_root = '{data_root}/'
fdconv = dict(type='FDConv', kernel_num=8)
model = dict(
    type='RetinaNet',
    data_preprocessor=dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=18, base_channels=16, out_indices=(1, 2, 3), frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False),
    neck=dict(
        type='FPN', in_channels=[32, 64, 128], out_channels=32, start_level=0,
        add_extra_convs='on_input', num_outs=5, conv_cfg=fdconv),
    bbox_head=dict(
        type='RetinaHead', num_classes=2, in_channels=32, stacked_convs=1, feat_channels=32,
        conv_cfg=fdconv,
        anchor_generator=dict(
            type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1, ratios=[1.0],
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0),
        sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(
        nms_pre=100, min_bbox_size=0, score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=10))
resize = dict(type='Resize', scale=(64, 64), keep_ratio=True)
train_pipeline = [
    dict(type='LoadImageFromFile'), resize, dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'), resize, dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor'))]
dataset = dict(
    type='CocoDataset', data_root=data_root, metainfo=dict(classes=('a', 'b')),
    ann_file='ann.json', data_prefix=dict(img='images/'))
train_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(dataset, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(dataset, pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'ann.json', metric='bbox')
test_evaluator = val_evaluator
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2)]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=2)
randomness = dict(seed=0)
"""

# EncoderDecoder: ResNetV1c-18 of 16 channels and an FCN head whose 32-channel conv is FDConv.
SEG_CONFIG = """
_base_ = 'mmseg::_base_/default_runtime.py'
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)
data_root = '{data_root}/'
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(64, 64)),
    backbone=dict(
        type='ResNetV1c', depth=18, stem_channels=16, base_channels=16, out_indices=(3,),
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False),
    decode_head=dict(
        type='FCNHead', in_channels=128, in_index=0, channels=32, num_convs=1,
        concat_input=False, num_classes=2, norm_cfg=dict(type='BN', requires_grad=True),
        conv_cfg=dict(type='FDConv', kernel_num=8), align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode='whole'))
pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]  # mmseg.apis
dataset = dict(
    type='BaseSegDataset', data_root=data_root, pipeline=pipeline,
    metainfo=dict(classes=('background', 'box'), palette=[[0, 0, 0], [255, 0, 0]]),
    img_suffix='.png', seg_map_suffix='.png', data_prefix=dict(img_path='img', seg_map_path='ann'))
train_dataloader = dict(
    batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dataset)
val_dataloader = dict(
    batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dataset)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
param_scheduler = [dict(type='PolyLR', power=0.9, begin=0, end=2, by_epoch=False)]
default_hooks = dict(
    timer=dict(type='IterTimerHook'), logger=dict(type='LoggerHook', interval=1),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook', interval=1))
randomness = dict(seed=0)
"""


def box_images(seed: int = 0) -> List[Dict]:
    """Noise images of ``IMAGE_SIZE`` squared, each with one bright box: image and xywh box."""
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(NUM_IMAGES):
        image = rng.integers(0, 60, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        x, y, w, h = 8 + 6 * index, 10 + 4 * index, 24, 20
        image[y : y + h, x : x + w] = (200, 60 * index, 90)
        samples.append(dict(image=image, box=(x, y, w, h), label=index % 2))
    return samples


def write_det_data(root: Path) -> Path:
    """COCO-style ``root/images/*.png`` and ``root/ann.json``, two classes."""
    (root / 'images').mkdir(parents=True)
    images, annotations = [], []
    for index, sample in enumerate(box_images()):
        cv2.imwrite(str(root / 'images' / f'{index}.png'), sample['image'])
        images.append(dict(id=index, file_name=f'{index}.png', width=IMAGE_SIZE, height=IMAGE_SIZE))
        x, y, w, h = sample['box']
        annotations.append(
            dict(
                id=index,
                image_id=index,
                category_id=sample['label'],
                bbox=[x, y, w, h],
                area=w * h,
                iscrowd=0,
            )
        )
    categories = [dict(id=0, name='a'), dict(id=1, name='b')]
    (root / 'ann.json').write_text(
        json.dumps(dict(images=images, annotations=annotations, categories=categories))
    )
    return root


def write_seg_data(root: Path) -> Path:
    """``root/img/*.png`` and label maps ``root/ann/*.png`` (0 background, 1 box)."""
    (root / 'img').mkdir(parents=True)
    (root / 'ann').mkdir()
    for index, sample in enumerate(box_images()):
        x, y, w, h = sample['box']
        labels = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        labels[y : y + h, x : x + w] = 1
        cv2.imwrite(str(root / 'img' / f'{index}.png'), sample['image'])
        cv2.imwrite(str(root / 'ann' / f'{index}.png'), labels)
    return root


@pytest.fixture(scope='module')
def det_config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('det')
    data_root = write_det_data(root / 'data')
    config = root / 'tiny_retinanet_fdconv.py'
    config.write_text(DET_CONFIG.format(data_root=data_root))
    return config


@pytest.fixture(scope='module')
def seg_config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('seg')
    data_root = write_seg_data(root / 'data')
    config = root / 'tiny_fcn_fdconv.py'
    config.write_text(SEG_CONFIG.format(data_root=data_root))
    return config


def tool_process(
    args: List[str], cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
    """Run ``tools/<args[0]>`` (``.py`` with this Python, ``.sh`` with bash); output merged.

    One OpenMP thread per process, as torchrun sets: on a small, shared CPU machine, torch's
    default of one thread per core made a training iteration up to 40 times slower.
    """
    tool = TOOLS / args[0]
    command = [sys.executable, str(tool)] if tool.suffix == '.py' else ['bash', str(tool)]
    return subprocess.run(
        command + [str(arg) for arg in args[1:]],
        cwd=cwd or REPO,
        env={**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope='session')
def run_tool():
    """:func:`tool_process`, for the tests."""
    return tool_process
