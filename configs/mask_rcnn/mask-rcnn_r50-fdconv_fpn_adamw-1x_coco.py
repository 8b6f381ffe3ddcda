# Mask R-CNN, ResNet-50 with FDConv (K = 64), FPN, AdamW (lr 1e-4, weight decay 0.05, none on
# norms), the DETR-style multi-scale crop augmentation, mixed precision, 12 epochs with lr
# steps at epochs 10 and 11, on COCO: 8 GPUs x 2 images, `tools/dist_train.sh THIS 8`.
# Expected: box AP 42.4, mask AP 38.6 (paper).
# Pretrained weights (the torchvision ImageNet ResNet-50 that mmdet uses):
#   python tools/convert_weights.py --model_type resnet \
#       --weight_path resnet50-0676ba61.pth --save_path pretrained/resnet50_fdconv.pth
# mmdet's Swin-T Mask R-CNN with the multi-scale crop pipeline and AdamW is the base; the
# backbone, neck inputs, schedule and optimizer groups change.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)
# fdconv_mm's hooks: checkpoints saved whole or not at all (the base's interval and
# max_keep_ckpts kept), and a test that refuses a checkpoint not fitting the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='CheckpointKeyCheckHook')]

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNetFDConv',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        conv_cfg=dict(type='FDConv', kernel_num=64),
        need_grad_list=['KSM', 'FBM'],
        init_cfg=dict(
            type='Pretrained', checkpoint='{{$FDCONV_PRETRAINED:pretrained}}/resnet50_fdconv.pth'
        ),
    ),
    neck=dict(in_channels=[256, 512, 1024, 2048]),
)

# Data and weights: under $FDCONV_DATA_ROOT and $FDCONV_PRETRAINED when set, else under data/
# and pretrained/ of the working directory (README, "Use the configs in your project").
data_root = '{{$FDCONV_DATA_ROOT:data}}/coco/'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[10, 11],
        gamma=0.1,
    ),
]
optim_wrapper = dict(
    type='AmpOptimWrapper',
    paramwise_cfg=dict(_delete_=True, norm_decay_mult=0.0),
)
