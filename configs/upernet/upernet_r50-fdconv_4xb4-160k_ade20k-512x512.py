# UPerNet, ResNet-50-V1c with FDConv (K = 64) in every bottleneck, on ADE20K, 160k
# iterations: 4 GPUs x 4 images, `tools/dist_train.sh THIS 4`.
# Expected: mIoU +3.1 over the same UPerNet R50 baseline (paper; mmseg's baseline: 42.05).
# Pretrained weights (mmseg's ImageNet ResNet-50-V1c, open-mmlab://resnet50_v1c):
#   python tools/convert_weights.py --model_type resnet \
#       --weight_path resnet50_v1c-2cccc1ad.pth --save_path pretrained/resnet50_v1c_fdconv.pth
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)
# fdconv_mm's hooks: checkpoints saved whole or not at all (the base's interval and
# max_keep_ckpts kept), and a test that refuses a checkpoint not fitting the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='CheckpointKeyCheckHook')]

model = dict(
    pretrained=None,
    backbone=dict(
        type='ResNetV1cFDConv',
        conv_cfg=dict(type='FDConv', kernel_num=64),
        need_grad_list=['KSM', 'FBM'],
        init_cfg=dict(
            type='Pretrained',
            checkpoint='{{$FDCONV_PRETRAINED:pretrained}}/resnet50_v1c_fdconv.pth',
        ),
    ),
)

# Data and weights: under $FDCONV_DATA_ROOT and $FDCONV_PRETRAINED when set, else under data/
# and pretrained/ of the working directory (README, "Use the configs in your project").
data_root = '{{$FDCONV_DATA_ROOT:data}}/ade/ADEChallengeData2016'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
