"""Test a checkpoint of an mmdet or mmseg config: ``python tools/test.py CONFIG CHECKPOINT``.

Flags as in mmdet 3.x's ``tools/test.py``; see docs/training.md.
"""

import argparse
import os
import sys

from mmengine.config import DictAction

from fdconv_mm.engine import CheckpointMismatchError, run_test, setup_test_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector or segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--out',
        help='mmdet: dump the predictions to this .pkl file; mmseg: save the predicted '
        'label maps to this directory',
    )
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='save painted predictions here (mmdet: relative to <work_dir>/<timestamp>)',
    )
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs such as test_dataloader.batch_size=1',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    parser.add_argument(
        '--allow-partial-load',
        action='store_true',
        help='test a checkpoint whose keys do not all match the model (missing, unexpected '
        'or mis-shaped); without it such a checkpoint is refused, since the metrics would be '
        'those of a partly initialized model',
    )
    # torch.distributed.launch passes --local-rank (torch>=2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    try:
        cfg = setup_test_config(
            args.config,
            args.checkpoint,
            work_dir=args.work_dir,
            out=args.out,
            show=args.show,
            show_dir=args.show_dir,
            wait_time=args.wait_time,
            tta=args.tta,
            cfg_options=args.cfg_options,
            launcher=args.launcher,
            allow_partial_load=args.allow_partial_load,
        )
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'test.py: error: {error}')
    try:
        run_test(cfg)
    except CheckpointMismatchError as error:
        sys.exit(f'test.py: error: {error}')


if __name__ == '__main__':
    main()
