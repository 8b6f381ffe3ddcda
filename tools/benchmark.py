"""Time and memory of FDConv layers and models against their plain-conv baselines.

    python tools/benchmark.py --json work_dirs/benchmark.json     # `make bench`
    python tools/benchmark.py --onnx    # ONNX Runtime inference of two backbones

Prints Markdown tables (docs/benchmarks.md keeps them) and writes every number to --json.
Measure on a quiet machine: the 1-minute load average is printed with the tables.
"""

import argparse
import json
import os
import warnings

import torch
from mmengine.config import DictAction

from fdconv_mm.benchmark import format_report, resolve_device, run_suite
from fdconv_mm.benchmark.onnx_benchmark import (
    ONNX_BACKBONES,
    ONNX_DEFAULTS,
    format_onnx_report,
    run_onnx_benchmark,
)

# The keys of fdconv_mm.benchmark.model_benchmark.MODEL_CHOICES (that module imports mmdet).
MODEL_NAMES = ('faster_rcnn', 'upernet_r50', 'resnet50', 'swin_t')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--device', default='auto', help="'cpu', 'cuda[:i]' or 'auto' (CUDA when available)"
    )
    parser.add_argument('--repeat', type=int, help='timed runs (default: 10 layers, 5 models)')
    parser.add_argument('--warmup', type=int, help='untimed runs first (default: 3 / 2)')
    parser.add_argument('--threads', type=int, default=2, help='torch.set_num_threads (CPU)')
    parser.add_argument(
        '--image-size',
        type=int,
        help='square image size of every model (default: 320 Faster R-CNN, 256 UPerNet; '
        'with --onnx 128 demo, 512 resnet50)',
    )
    parser.add_argument(
        '--fdconv-cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the FDConv model configs (not the baselines), as '
        "tools/train.py's --cfg-options, e.g. model.backbone.need_grad_list=[]",
    )
    parser.add_argument(
        '--compile',
        action='store_true',
        help='time every layer (Conv2d, FDConv, floor) as torch.compile(layer), and every '
        "model's backbone as torch.compile(backbone)",
    )
    parser.add_argument('--batch', type=int, default=2, help='batch size of the layers')
    parser.add_argument(
        '--full-resolution',
        action='store_true',
        help='the layer shapes at the stage strides of an 800 x 1216 image (twice the '
        'default maps, e.g. 64->64 3x3 at 200 x 304)',
    )
    parser.add_argument(
        '--models',
        nargs='+',
        choices=MODEL_NAMES,
        help='which models (default: faster_rcnn upernet_r50); resnet50 and swin_t are '
        "the UPerNet configs' backbones alone",
    )
    parser.add_argument('--train-batch', type=int, default=2, help="models' training batch")
    parser.add_argument('--infer-batch', type=int, default=1, help="models' inference batch")
    parser.add_argument(
        '--keep-for-backward',
        action='store_true',
        help="FDConv's speed mode (keep_for_backward=True) in the layers and the models' "
        'backbones',
    )
    parser.add_argument('--json', help='write all results to this JSON file')
    part = parser.add_mutually_exclusive_group()
    part.add_argument('--layers-only', action='store_true', help='skip the models')
    part.add_argument('--models-only', action='store_true', help='skip the layers')
    parser.add_argument(
        '--compile-time',
        action='store_true',
        help='torch.compile (inductor) of one FDConv(256, 256, 3) layer at --batch x 32 x 32: '
        'the first compiled training step (the compilation included), then compiled and '
        'eager steps in alternating rounds (--repeat default 10, --warmup default 3)',
    )
    parser.add_argument(
        '--profile',
        action='store_true',
        help="torch.profiler operator times by kind (conv, fft, gather, copy, ...): FDConv's "
        'ResNet-50 layer shapes at the strides of a 512 x 512 image (--batch) and the '
        'ResNet-50 backbone pair (--image-size default 512, --infer-batch, --train-batch); '
        '--repeat profiled runs (default 2); --layers-only / --models-only pick one part',
    )
    part.add_argument(
        '--onnx',
        action='store_true',
        help='only ONNX Runtime (CPU) against PyTorch inference of backbones, FDConv and '
        'plain convs (--onnx-models, --image-size, --infer-batch, --repeat default 20, '
        '--warmup default 3, --threads)',
    )
    parser.add_argument(
        '--onnx-models',
        nargs='+',
        choices=ONNX_BACKBONES,
        help="with --onnx, which backbones (default: demo resnet50): demo, the demo detector's "
        "ResNet-18 at half width (128 x 128); resnet50, the UPerNet R50 configs' "
        'ResNet-50-V1c (512 x 512)',
    )
    args = parser.parse_args()
    if args.onnx_models and not args.onnx:
        parser.error('--onnx-models needs --onnx')
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if os.getloadavg()[0] > 0.5:
        warnings.warn(
            f'1-minute load average {os.getloadavg()[0]:.2f}: the machine is busy, '
            'timings will be noisy',
            stacklevel=1,
        )
    if args.compile_time:
        results = run_compile_time(args)
    elif args.profile:
        results = run_profile(args)
    elif args.onnx:
        results = run_onnx(args)
    else:
        results = run_models_and_layers(args, resolve_device(args.device))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as file:
            json.dump(results, file, indent=2)
        print(f'Results written to {args.json}')


def require_cpu(args: argparse.Namespace, flag: str) -> None:
    """Exit with the usage error code unless --device is 'auto' or 'cpu'."""
    if args.device not in ('auto', 'cpu'):
        raise SystemExit(f'benchmark.py: error: {flag} runs on the CPU, not --device {args.device}')


def run_compile_time(args: argparse.Namespace) -> dict:
    """Compile time and compiled against eager training step of one FDConv layer."""
    from fdconv_mm.benchmark.compile_benchmark import measure_compile
    from fdconv_mm.benchmark.tables import format_table

    require_cpu(args, '--compile-time')
    result = measure_compile(
        batch=args.batch,
        repeat=args.repeat or 10,
        warmup=3 if args.warmup is None else args.warmup,
    )
    keys = ('shape', 'batch', 'compile_s', 'eager_ms', 'compiled_ms', 'compiled_ratio')
    print(format_table(keys, [[result[key] for key in keys]]))
    return result


def run_profile(args: argparse.Namespace) -> dict:
    """The operator profiles of the layers and the ResNet-50 backbone; prints their tables."""
    from fdconv_mm.benchmark.profiling import profile_backbones, profile_layers, profile_table

    require_cpu(args, '--profile')
    runs = args.repeat or 2
    results = dict(layers=[], backbones=[])
    if not args.models_only:
        results['layers'] = profile_layers(batch=args.batch, runs=runs)
        print('Layers at the stage strides of a 512 x 512 image, batch', args.batch)
        print(profile_table(results['layers']))
    if not args.layers_only:
        results['backbones'] = profile_backbones(
            args.image_size or 512, args.infer_batch, args.train_batch, runs
        )
        print(profile_table(results['backbones']))
    return results


def run_onnx(args: argparse.Namespace) -> dict:
    """The ONNX Runtime benchmark (on the CPU: --device auto or cpu); prints its table."""
    require_cpu(args, '--onnx')
    results = run_onnx_benchmark(
        backbones=args.onnx_models or tuple(ONNX_BACKBONES),
        image_size=args.image_size,
        batch=args.infer_batch,
        repeat=args.repeat or ONNX_DEFAULTS['repeat'],
        warmup=ONNX_DEFAULTS['warmup'] if args.warmup is None else args.warmup,
        threads=args.threads,
    )
    print(format_onnx_report(results))
    return results


def run_models_and_layers(args: argparse.Namespace, device: torch.device) -> dict:
    """The layer and model benchmarks; prints their tables."""
    results = run_suite(
        device,
        layers=not args.models_only,
        models=not args.layers_only,
        repeat=args.repeat,
        warmup=args.warmup,
        image_size=args.image_size,
        fdconv_options=args.fdconv_cfg_options,
        compile_layers=args.compile,
        keep_for_backward=args.keep_for_backward,
        layer_batch=args.batch,
        full_resolution=args.full_resolution,
        model_names=args.models,
        train_batch=args.train_batch,
        infer_batch=args.infer_batch,
        compile_models=args.compile,
    )
    print(format_report(results))
    return results


if __name__ == '__main__':
    main()
