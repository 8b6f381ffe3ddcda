"""Train an mmdet or mmseg config (its ``default_scope`` decides): ``python tools/train.py CONFIG``.

Flags as in mmdet 3.x's ``tools/train.py``; see docs/training.md.
"""

import argparse
import os
import sys

from mmengine.config import DictAction

from fdconv_mm.engine import run_train, setup_train_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true', help='enable automatic-mixed-precision training (GPU)'
    )
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the total batch size (config: auto_scale_lr)',
    )
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or without a value from the latest checkpoint in '
        'the work dir; fails if there is none',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs such as '
        'env_cfg.dist_cfg.backend=gloo or "model.backbone.out_indices=[1,2,3]"',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    # torch.distributed.launch passes --local-rank (torch>=2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    try:
        cfg = setup_train_config(
            args.config,
            work_dir=args.work_dir,
            amp=args.amp,
            auto_scale_lr=args.auto_scale_lr,
            resume=args.resume,
            cfg_options=args.cfg_options,
            launcher=args.launcher,
        )
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'train.py: error: {error}')
    run_train(cfg)


if __name__ == '__main__':
    main()
