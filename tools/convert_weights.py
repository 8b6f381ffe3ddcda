"""Convert an ImageNet ResNet, Swin, SegFormer (MiT) / ViT or ConvNeXt checkpoint for FDConv.

    python tools/convert_weights.py --model_type resnet \
        --weight_path resnet50-0676ba61.pth --save_path pretrained/resnet50_fdconv.pth
    python tools/convert_weights.py --model_type vit \
        --weight_path mit_b0.pth --save_path pretrained/mit_b0_fdconv.pth

``--model_type vit`` takes mmseg ViT and MiT keys and the official SegFormer files
(``mit_b*.pth``, saved in mmseg's MiT layout); ``--model_type convnext`` takes mmpretrain,
timm and the official ConvNeXt files (saved in mmpretrain's layout, under ``backbone.``).

The flags of the original tool are accepted (``--model_type``, ``--weight_path``,
``--save_path``). The result loads with ``init_cfg=dict(type='Pretrained', checkpoint=DST)``
(ConvNeXt: with ``prefix='backbone.'`` too, as mmdet's ConvNeXt configs set it).
"""

import argparse
import sys
from pathlib import Path

from fdconv_mm.converters import (
    MODEL_TYPES,
    CheckpointFileError,
    convert_imagenet_checkpoint,
    load_checkpoint_file,
)
from fdconv_mm.engine import atomic_torch_save
from fdconv_mm.version import __version__


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model_type', '--model-type', required=True, choices=MODEL_TYPES)
    parser.add_argument(
        '--weight_path',
        '--weight-path',
        required=True,
        type=Path,
        help='source checkpoint (raw state dict, or under state_dict/model)',
    )
    parser.add_argument('--save_path', '--save-path', required=True, type=Path)
    parser.add_argument('--force', action='store_true', help='overwrite an existing file')
    parser.add_argument('--param-ratio', type=int, default=1, help="FDConv's param_ratio")
    parser.add_argument('--use-fdconv-if-c-gt', type=int, default=16)
    parser.add_argument('--use-fdconv-if-k-in', type=int, nargs='+', default=[1, 3])
    parser.add_argument(
        '--stages',
        type=int,
        nargs='+',
        default=None,
        help='0-based stages with FDConv (the fdconv_stages of Swin, MiT, ConvNeXt); '
        'default all',
    )
    parser.add_argument(
        '--dcn-stages',
        type=int,
        nargs='+',
        default=None,
        help='ResNet with dcn: 0-based stages whose conv2 is a DCN (where stage_with_dcn is '
        'True; e.g. 1 2 3 for (False, True, True, True)): their conv2 weights are copied',
    )
    parser.add_argument(
        '--unsafe-load',
        action='store_true',
        help='unpickle arbitrary objects (torch.load weights_only=False); '
        'only for files you trust',
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.save_path.exists() and not args.force:
        sys.exit(f'error: {args.save_path} exists; pass --force to overwrite it')
    try:
        checkpoint = load_checkpoint_file(args.weight_path, args.unsafe_load)
    except CheckpointFileError as error:
        sys.exit(f'error: {error}')
    conv_cfg = dict(
        param_ratio=args.param_ratio,
        use_fdconv_if_c_gt=args.use_fdconv_if_c_gt,
        use_fdconv_if_k_in=args.use_fdconv_if_k_in,
    )
    try:
        state_dict, summary = convert_imagenet_checkpoint(
            checkpoint, args.model_type, conv_cfg, args.stages, args.dcn_stages
        )
    except ValueError as error:
        sys.exit(f'error: {error}')
    args.save_path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(
        fdconv_mm=__version__,
        source=str(args.weight_path),
        layout=summary.layout,
        model_type=args.model_type,
        conv_cfg=conv_cfg,
    )
    atomic_torch_save(dict(state_dict=state_dict, meta=meta), args.save_path)
    print(f'{args.weight_path} ({summary.layout} layout) -> {args.save_path}')
    print(f'  converted to dft_weight: {len(summary.converted)}')
    print(f'  copied:                  {len(summary.copied)}')
    print(
        f'  skipped:                 {len(summary.skipped)} {summary.skipped[:6]}'
        f'{" ..." if len(summary.skipped) > 6 else ""}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
