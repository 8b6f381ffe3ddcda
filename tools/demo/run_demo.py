"""The main job: train and evaluate an FDConv Faster R-CNN on the embedded demo data (CPU).

    python tools/demo/run_demo.py            # what `make demo` runs, from the repo root

Generates data/demo_shapes on first use, trains with tools/train.py (progress in the log),
tests the saved checkpoint with tools/test.py, writes work_dirs/demo/predictions.png,
work_dirs/demo/training_curves.png and the FDConv figures of the trained detector (all shown
by work_dirs/demo/index.md and index.html), and prints the COCO metrics.
"""

import argparse
import sys

from fdconv_mm.demo.main_job import DEMO_CONFIG, TARGET_METRIC, TARGET_VALUE, run_demo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--config', default=DEMO_CONFIG)
    parser.add_argument('--data-root', default='data/demo_shapes')
    parser.add_argument('--cfg-options', nargs='+', default=None, help='passed to both tools')
    args = parser.parse_args()
    metrics = run_demo(args.work_dir, args.config, args.data_root, args.cfg_options)
    print('\nDemo test metrics (tools/test.py on the saved checkpoint):')
    for name, value in metrics.items():
        print(f'  {name:22s} {value:.3f}')
    reached = metrics.get(TARGET_METRIC, 0.0) >= TARGET_VALUE
    print(f'{TARGET_METRIC} target {TARGET_VALUE}: {"reached" if reached else "NOT reached"}')
    print(f'Figures: {args.work_dir}/index.md (and index.html) shows them all')
    return 0 if reached else 1


if __name__ == '__main__':
    sys.exit(main())
