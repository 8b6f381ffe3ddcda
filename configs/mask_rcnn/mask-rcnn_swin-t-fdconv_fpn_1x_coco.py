# Mask R-CNN, Swin-T with FDConv (K = 64) in the FFN of every block, FPN, 1x (AdamW, lr 1e-4,
# 12 epochs, lr steps at epochs 8 and 11) on COCO: 8 GPUs x 2 images, `tools/dist_train.sh THIS 8`.
# Expected: box AP 44.5, mask AP 40.5, +3 M parameters over Swin-T (paper; mmdet's Swin-T
# baseline: box AP 42.7, mask AP 39.3). This backbone has +6.03 M with the layer's default
# options (tests/test_models/test_parameter_deltas.py).
# Pretrained weights (the official ImageNet-1k Swin-T, swin_tiny_patch4_window7_224.pth):
#   python tools/convert_weights.py --model_type swin \
#       --weight_path swin_tiny_patch4_window7_224.pth --save_path pretrained/swin_tiny_fdconv.pth
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
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
        # The converted file is in mmdet's layout (backbone.stages...) already; the base's
        # convert_weights=True, for the official file, would rename its keys a second time.
        convert_weights=False,
        init_cfg=dict(
            type='Pretrained', checkpoint='{{$FDCONV_PRETRAINED:pretrained}}/swin_tiny_fdconv.pth'
        ),
    )
)

# Data and weights: under $FDCONV_DATA_ROOT and $FDCONV_PRETRAINED when set, else under data/
# and pretrained/ of the working directory (README, "Use the configs in your project").
data_root = '{{$FDCONV_DATA_ROOT:data}}/coco/'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
