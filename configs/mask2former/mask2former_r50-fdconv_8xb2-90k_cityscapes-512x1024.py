# Mask2Former, ResNet-50 with FDConv (K = 64) in every bottleneck, on Cityscapes, 90k
# iterations (AdamW, lr 1e-4, poly): 8 GPUs x 2 images of 512 x 1024, `tools/dist_train.sh THIS 8`.
# Expected: mIoU 80.4 (paper, from 79.4 without FDConv; mmseg's own Mask2Former R50 with
# this schedule: 80.44).
# Pretrained weights (the torchvision ImageNet ResNet-50 of mmseg's base, torchvision://resnet50):
#   python tools/convert_weights.py --model_type resnet \
#       --weight_path resnet50-0676ba61.pth --save_path pretrained/resnet50_fdconv.pth
_base_ = 'mmseg::mask2former/mask2former_r50_8xb2-90k_cityscapes-512x1024.py'
# mmdet.models: the Mask2Former head's pixel decoder, assigner and losses are mmdet's (the
# base's ADE20K sibling imports it; this base does not).
custom_imports = dict(imports=['mmdet.models', 'fdconv_mm'], allow_failed_imports=False)
# fdconv_mm's hooks: checkpoints saved whole or not at all (the base's interval and
# max_keep_ckpts kept), and a test that refuses a checkpoint not fitting the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='CheckpointKeyCheckHook')]

model = dict(
    backbone=dict(
        type='ResNetFDConv',
        conv_cfg=dict(type='FDConv', kernel_num=64),
        need_grad_list=['KSM', 'FBM'],
        init_cfg=dict(
            type='Pretrained', checkpoint='{{$FDCONV_PRETRAINED:pretrained}}/resnet50_fdconv.pth'
        ),
    ),
)

# Data and weights: under $FDCONV_DATA_ROOT and $FDCONV_PRETRAINED when set, else under data/
# and pretrained/ of the working directory (README, "Use the configs in your project").
data_root = '{{$FDCONV_DATA_ROOT:data}}/cityscapes/'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
