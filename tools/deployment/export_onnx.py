"""Export a config's model (or backbone) to ONNX and check it against PyTorch in ONNX Runtime.

    python tools/deployment/export_onnx.py CONFIG [CHECKPOINT] --shape H W [--batch B] \\
        --out FILE [--part model|backbone] [--image PATH ...] [--tolerance 1e-4] \\
        [--dynamic-hw [--check-shape H W ...]] [--exporter dynamo|torchscript] [--optimize]

``--part model`` (the default) exports an mmdet detector's backbone and neck features
(``extract_feat``; box decoding and NMS are mmdeploy's) or an mmseg segmentor's logits at
the input size (``encode_decode``); ``--part backbone`` the backbone alone. The file is
checked with ``onnx.checker`` and run in ONNX Runtime (CPU) on the same input as PyTorch;
the largest relative difference, ``max|onnx - torch| / max|torch|`` per output, is printed,
and the exit status is 1 above ``--tolerance`` or when the exporter fails (2 for bad
arguments). The input is random (a normalized image's range) unless ``--image`` gives files,
which are resized to H x W and put through the model's data preprocessor. Needs
``pip install -e .[deploy]``.
"""

import argparse
import sys
from typing import List, Optional

from mmengine.config import DictAction

from fdconv_mm.deployment import (
    DEFAULT_TOLERANCE,
    EXPORTERS,
    OPSET,
    PARTS,
    ExportError,
    export_config,
)
from fdconv_mm.engine import CheckpointMismatchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='export_onnx.py', description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file, or mmdet::path / mmseg::path')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint; none: weights as constructed')
    parser.add_argument(
        '--shape', nargs=2, type=int, required=True, metavar=('H', 'W'), help='input size'
    )
    parser.add_argument('--batch', type=int, default=1, help='batch size, fixed in the file')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument(
        '--part',
        choices=PARTS,
        default='model',
        help='model: a detector to its backbone + neck features, a segmentor to its logits; '
        'backbone: the backbone alone (default: model)',
    )
    parser.add_argument(
        '--image',
        nargs='+',
        help='image file(s) as input, resized to H x W and data-preprocessed: one, or one '
        'per sample of --batch (default: random values)',
    )
    parser.add_argument(
        '--tolerance',
        type=float,
        default=DEFAULT_TOLERANCE,
        help='largest accepted max|onnx - torch| / max|torch| (default: %(default)g)',
    )
    parser.add_argument(
        '--dynamic-hw',
        action='store_true',
        help='leave height and width dynamic in the file (the batch stays fixed); also '
        'compares at --check-shape',
    )
    parser.add_argument(
        '--check-shape',
        nargs=2,
        type=int,
        action='append',
        metavar=('H', 'W'),
        help='with --dynamic-hw, another size to compare at, on random input (repeatable; '
        'default: H+32 W+32)',
    )
    parser.add_argument(
        '--exporter',
        choices=EXPORTERS,
        default='dynamo',
        help="dynamo: torch.export (torch's default); torchscript: tracing, as mmdeploy "
        '(fixed sizes only) (default: dynamo)',
    )
    parser.add_argument(
        '--optimize',
        action='store_true',
        help="run the dynamo exporter's ONNX graph optimization (onnxscript): a slightly "
        'smaller file, an FDConv export about 3x slower (ONNX Runtime optimizes on loading)',
    )
    parser.add_argument('--opset', type=int, default=OPSET, help='ONNX opset (%(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of random input and weights')
    parser.add_argument(
        '--allow-partial-load',
        action='store_true',
        help='export with a checkpoint that misses or adds keys (refused by default)',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs such as model.backbone.conv_cfg=None',
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the tool; returns the exit status (0, or 1 above the tolerance)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = export_config(
            args.config,
            args.out,
            args.shape,
            checkpoint=args.checkpoint,
            batch=args.batch,
            part=args.part,
            images=args.image,
            tolerance=args.tolerance,
            cfg_options=args.cfg_options,
            allow_partial_load=args.allow_partial_load,
            opset=args.opset,
            seed=args.seed,
            dynamic_hw=args.dynamic_hw,
            check_shapes=args.check_shape,
            exporter=args.exporter,
            optimize=args.optimize,
        )
    except (FileNotFoundError, ValueError, CheckpointMismatchError) as error:
        parser.error(str(error))
    except ExportError as error:
        print(f'export_onnx.py: error: {error}', file=sys.stderr)
        return 1
    print('\n'.join(report.lines()))
    if not report.passed:
        print(
            f'export_onnx.py: error: ONNX Runtime differs from PyTorch above --tolerance '
            f'{args.tolerance:g} (the file is kept: {args.out})',
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
