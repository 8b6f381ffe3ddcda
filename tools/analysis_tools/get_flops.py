"""Parameters and FLOPs of an mmdet or mmseg config's model, FDConv's own work included.

``python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--baseline]``; CONFIG is a
file or ``mmdet::path`` / ``mmseg::path``. The method (1 flop = 1 multiply-add, FFT and
FDConv element-wise costs) is in :mod:`fdconv_mm.analysis`.
"""

import argparse
import sys

from mmengine.config import DictAction

from fdconv_mm.analysis import analyze_config, format_report


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Count the params and FLOPs of a model')
    parser.add_argument('config', help='config file, or mmdet::path / mmseg::path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='input H W (or one size for a square); default 1280 800 (mmdet), 512 512 (mmseg)',
    )
    parser.add_argument(
        '--baseline',
        action='store_true',
        help='also count the model with every FDConv as the plain conv it replaces',
    )
    parser.add_argument(
        '--depth', type=int, default=1, help='module levels in the table (1: backbone, neck...)'
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs such as model.backbone.depth=101',
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        analysis = analyze_config(args.config, args.shape, args.cfg_options, args.baseline)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'get_flops.py: error: {error}')
    print(format_report(analysis.report, args.depth, analysis.baseline, analysis.header))


if __name__ == '__main__':
    main()
