"""Write the demo's synthetic shapes dataset (COCO json + mmseg label maps), once.

    python tools/demo/generate_data.py --root data/demo_shapes

A second run with the same arguments finds the dataset complete and writes nothing.
"""

import argparse
import json
import time
from pathlib import Path

from fdconv_mm.demo import generate_demo_dataset, is_demo_dataset_complete


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', type=Path, default=Path('data/demo_shapes'))
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=80)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--max-shapes', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--overwrite', action='store_true', help='redraw even if complete')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    params = dict(
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.image_size,
        max_shapes=args.max_shapes,
        seed=args.seed,
    )
    reused = not args.overwrite and is_demo_dataset_complete(args.root, **params)
    start = time.perf_counter()
    root = generate_demo_dataset(args.root, overwrite=args.overwrite, **params)
    manifest = json.loads((root / 'manifest.json').read_text())
    action = 'found complete' if reused else f'generated in {time.perf_counter() - start:.1f} s'
    print(
        f'demo_shapes {action} at {root}: '
        f'{manifest["num_images"]["train"]} train / {manifest["num_images"]["val"]} val images '
        f'({manifest["num_instances"]["train"]} / {manifest["num_instances"]["val"]} instances), '
        f'{args.image_size}x{args.image_size}, classes {", ".join(manifest["classes"])}'
    )


if __name__ == '__main__':
    main()
