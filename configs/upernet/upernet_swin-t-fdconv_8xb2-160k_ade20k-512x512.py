# UPerNet, Swin-T with FDConv (K = 64) in the FFN of every block, on ADE20K, 160k iterations:
# 8 GPUs x 2 images, `tools/dist_train.sh THIS 8`.
# Expected: above mmseg's Swin-T UPerNet baseline (44.41 mIoU); the paper reports FDConv
# gains for UPerNet, its Swin-T figure is not in our records.
# Pretrained weights (the official ImageNet-1k Swin-T, swin_tiny_patch4_window7_224.pth):
#   python tools/convert_weights.py --model_type swin \
#       --weight_path swin_tiny_patch4_window7_224.pth --save_path pretrained/swin_tiny_fdconv.pth
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)
# fdconv_mm's hooks: checkpoints saved whole or not at all (the base's interval and
# max_keep_ckpts kept), and a test that refuses a checkpoint not fitting the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='CheckpointKeyCheckHook')]

model = dict(
    backbone=dict(
        type='SwinTransformerFDConv',
        conv_cfg=dict(type='FDConv', kernel_num=64),
        need_grad_list=['KSM', 'FBM'],
        init_cfg=dict(
            type='Pretrained', checkpoint='{{$FDCONV_PRETRAINED:pretrained}}/swin_tiny_fdconv.pth'
        ),
    ),
)

# Data and weights: under $FDCONV_DATA_ROOT and $FDCONV_PRETRAINED when set, else under data/
# and pretrained/ of the working directory (README, "Use the configs in your project").
data_root = '{{$FDCONV_DATA_ROOT:data}}/ade/ADEChallengeData2016'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
