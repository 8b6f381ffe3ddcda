# Mask R-CNN, ConvNeXt-T with FDConv (K = 64) in both pointwise layers of every block, FPN, 1x
# (AdamW, lr 1e-4, weight decay 0.05, layer-wise lr decay 0.95, 12 epochs, lr steps at epochs 8
# and 11) on COCO: 8 GPUs x 2 images, `tools/dist_train.sh THIS 8` (`--amp` as mmdet's 3x).
# Expected: box AP 45.2, mask AP 40.8, +3 M parameters over ConvNeXt-T (paper; this backbone has
# +9.04 M: FDConv's KSM on the 4C -> C layers).
# Pretrained weights (mmpretrain's ImageNet-1k ConvNeXt-T that mmdet's ConvNeXt configs use,
# convnext-tiny_3rdparty_32xb128-noema_in1k_20220301-795e9634.pth):
#   python tools/convert_weights.py --model_type convnext \
#       --weight_path convnext-tiny_3rdparty_32xb128-noema_in1k_20220301-795e9634.pth \
#       --save_path pretrained/convnext_tiny_fdconv.pth
# (or point init_cfg's checkpoint at the mmpretrain file itself: it converts on load).
# mmdet's ResNet-50 Mask R-CNN 1x is the base; the backbone, drop path, layer scale, optimizer
# and warm-up are those of mmdet's ConvNeXt-T Mask R-CNN (3x, multi-scale crop), whose
# mmpretrain backbone ConvNeXtFDConv reproduces (same arguments and state-dict keys).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)
# fdconv_mm's hooks: checkpoints saved whole or not at all (the base's interval and
# max_keep_ckpts kept), and a test that refuses a checkpoint not fitting the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='CheckpointKeyCheckHook')]

model = dict(
    backbone=dict(
        _delete_=True,
        type='ConvNeXtFDConv',
        arch='tiny',
        out_indices=[0, 1, 2, 3],
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False,
        conv_cfg=dict(type='FDConv', kernel_num=64),
        need_grad_list=['KSM', 'FBM'],
        init_cfg=dict(
            type='Pretrained',
            checkpoint='{{$FDCONV_PRETRAINED:pretrained}}/convnext_tiny_fdconv.pth',
            prefix='backbone.',  # the converted file keeps mmpretrain's keys, as its own files
        ),
    ),
    neck=dict(in_channels=[96, 192, 384, 768]),
)

# Data and weights: under $FDCONV_DATA_ROOT and $FDCONV_PRETRAINED when set, else under data/
# and pretrained/ of the working directory (README, "Use the configs in your project").
data_root = '{{$FDCONV_DATA_ROOT:data}}/coco/'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    constructor='LearningRateDecayOptimizerConstructor',
    paramwise_cfg={'decay_rate': 0.95, 'decay_type': 'layer_wise', 'num_layers': 6},
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
)
