# Faster R-CNN, ResNet-50 with FDConv (K = 64) in every bottleneck, FPN, 1x on COCO.
# The original trained with 2 GPUs x 8 images (SGD, lr 0.02): `tools/dist_train.sh THIS 2`.
# mmdet's base runs 8 GPUs x 2 images, the same 16 images per step and lr.
# Expected: box AP 39.4 (paper; baseline Faster R-CNN R50 37.2).
# Pretrained weights (the torchvision ImageNet ResNet-50 that mmdet uses):
#   python tools/convert_weights.py --model_type resnet \
#       --weight_path resnet50-0676ba61.pth --save_path pretrained/resnet50_fdconv.pth
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)
# fdconv_mm's hooks: checkpoints saved whole or not at all (the base's interval and
# max_keep_ckpts kept), and a test that refuses a checkpoint not fitting the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='CheckpointKeyCheckHook')]

model = dict(
    backbone=dict(
        type='ResNetFDConv',
        # Every other FDConv option at the released configs' value (= the layer default).
        conv_cfg=dict(type='FDConv', kernel_num=64),
        need_grad_list=['KSM', 'FBM'],
        init_cfg=dict(
            type='Pretrained', checkpoint='{{$FDCONV_PRETRAINED:pretrained}}/resnet50_fdconv.pth'
        ),
    )
)
# Data and weights: under $FDCONV_DATA_ROOT and $FDCONV_PRETRAINED when set, else under data/
# and pretrained/ of the working directory (README, "Use the configs in your project").
data_root = '{{$FDCONV_DATA_ROOT:data}}/coco/'
train_dataloader = dict(batch_size=8, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
auto_scale_lr = dict(base_batch_size=16)
