# UPerNet, ResNet-18-V1c (half width) with FDConv, from scratch on the embedded demo dataset
# on the CPU: 1 process x 8 images, 128x128, 2k iterations.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    '../_base_/demo_shapes_segmentation.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(
        type='ResNetV1cFDConv',
        depth=18,
        base_channels=32,
        stem_channels=32,
        norm_cfg=norm_cfg,
        conv_cfg=dict(type='FDConv', kernel_num=64),
    ),
    decode_head=dict(
        in_channels=[32, 64, 128, 256],
        channels=64,
        num_classes=4,
        norm_cfg=norm_cfg,
    ),
    auxiliary_head=dict(in_channels=128, channels=32, num_classes=4, norm_cfg=norm_cfg),
)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2000, val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01))
param_scheduler = [dict(type='PolyLR', eta_min=1e-5, power=1.0, begin=0, end=2000, by_epoch=False)]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=2000, max_keep_ckpts=1),
)
# A test refuses a checkpoint that does not fit the model (fdconv_mm's hook).
custom_hooks = [dict(type='CheckpointKeyCheckHook')]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
