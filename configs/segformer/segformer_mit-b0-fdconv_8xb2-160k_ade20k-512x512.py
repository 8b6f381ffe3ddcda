# SegFormer, MiT-B0 with FDConv (K = 64) as the two 1x1 convs of every MixFFN (16 layers; the
# 3x3 depth-wise conv stays plain), on ADE20K, 160k iterations: 8 GPUs x 2 images,
# `tools/dist_train.sh THIS 8`.
# Expected: above mmseg's SegFormer MiT-B0 baseline (37.41 mIoU); the paper's figure: not
# reported (no SegFormer figure in our records).
# Pretrained weights (mmseg's ImageNet MiT-B0, mit_b0.pth as mmseg's mit2mmseg writes it, or
# the official SegFormer mit_b0.pth):
#   python tools/convert_weights.py --model_type vit \
#       --weight_path mit_b0.pth --save_path pretrained/mit_b0_fdconv.pth
_base_ = 'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['fdconv_mm'], allow_failed_imports=False)
# fdconv_mm's hooks: checkpoints saved whole or not at all (the base's interval and
# max_keep_ckpts kept), and a test that refuses a checkpoint not fitting the model.
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [dict(type='CheckpointKeyCheckHook')]

model = dict(
    backbone=dict(
        type='MixVisionTransformerFDConv',
        conv_cfg=dict(type='FDConv', kernel_num=64),
        need_grad_list=['KSM', 'FBM'],
        init_cfg=dict(
            type='Pretrained', checkpoint='{{$FDCONV_PRETRAINED:pretrained}}/mit_b0_fdconv.pth'
        ),
    ),
)

# Data and weights: under $FDCONV_DATA_ROOT and $FDCONV_PRETRAINED when set, else under data/
# and pretrained/ of the working directory (README, "Use the configs in your project").
data_root = '{{$FDCONV_DATA_ROOT:data}}/ade/ADEChallengeData2016'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
