"""Figures of what a model's FDConv layers learned and do with an image, with an index.

``python tools/analysis_tools/visualize_fdconv.py CONFIG [CHECKPOINT] [--image PATH]
[--layers NAME_OR_PATTERN ...] --out-dir DIR``; CONFIG is an mmdet or mmseg config (file or
``mmdet::path`` / ``mmseg::path``). Without a checkpoint the weights stay as constructed;
without an image a synthetic shapes image is used. The figures are described in the
index the tool writes (``DIR/index.md``, ``DIR/index.html``); the numbers come from
:mod:`fdconv_mm.analysis.inspection`.
"""

import argparse
import sys
from pathlib import Path

from mmengine.config import DictAction

from fdconv_mm.analysis.visualize import visualize_config
from fdconv_mm.demo import write_demo_image


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Draw what the FDConv layers of a model learned')
    parser.add_argument('config', help='config file, or mmdet::path / mmseg::path')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint; none: weights as constructed')
    parser.add_argument('--image', help='input image; default: a synthetic shapes image')
    parser.add_argument(
        '--layers',
        nargs='+',
        help='layers for the per-layer figures: names or patterns such as "backbone.layer4.*" '
        '(default: the deepest FDConv of each stage, one with FBM where there is one)',
    )
    parser.add_argument('--out-dir', required=True, help='folder for the PNGs and the index')
    parser.add_argument('--grid', type=int, default=16, help='frequency-response grid side')
    parser.add_argument('--seed', type=int, default=0, help='seed of the compared weights')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs such as model.backbone.depth=101',
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    image = args.image or write_demo_image(Path(args.out_dir) / 'input.png', args.seed)
    try:
        result = visualize_config(
            args.config,
            args.out_dir,
            checkpoint=args.checkpoint,
            image=image,
            layers=args.layers,
            cfg_options=args.cfg_options,
            grid=args.grid,
            seed=args.seed,
        )
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'visualize_fdconv.py: error: {error}')
    print(f'{len(result.figures)} figures; index: {result.index_md}, {result.index_html}')


if __name__ == '__main__':
    main()
