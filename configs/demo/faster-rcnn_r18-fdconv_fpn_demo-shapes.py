# Faster R-CNN, ResNet-18 with FDConv, narrow FPN and heads, trained from scratch on the
# embedded demo dataset on the CPU: `make demo` (1 process x 8 images, 128x128).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/demo_shapes_detection.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)

channels = 64
model = dict(
    backbone=dict(
        type='ResNetFDConv',
        depth=18,
        base_channels=32,
        frozen_stages=-1,
        norm_eval=False,
        conv_cfg=dict(type='FDConv', kernel_num=64),
        init_cfg=None,
    ),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=channels),
    rpn_head=dict(
        in_channels=channels,
        feat_channels=channels,
        anchor_generator=dict(scales=[4]),
    ),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(in_channels=channels, fc_out_channels=256, num_classes=3),
    ),
    # At most 4 objects per 128x128 image: far fewer proposals and RoIs than COCO needs.
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(sampler=dict(num=128)),
    ),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)),
)

max_epochs = 4
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='AtomicCheckpointHook', interval=max_epochs, max_keep_ckpts=1),
)
# A test refuses a checkpoint that does not fit the model (fdconv_mm's hook).
custom_hooks = [dict(type='CheckpointKeyCheckHook')]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
auto_scale_lr = dict(enable=False, base_batch_size=8)
