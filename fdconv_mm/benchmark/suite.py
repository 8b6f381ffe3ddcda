"""The whole benchmark: layers and models, as one JSON-able dict and one text report."""

from typing import Any, Dict, Optional, Sequence

import torch

from .environment import describe, machine_info
from .layer_benchmark import (
    RESNET50_DETECTION_SHAPES,
    RESNET50_DETECTION_SHAPES_FULL,
    benchmark_layers,
)
from .tables import layer_table, model_table
from .timing import MEMORY_METHODS

LAYER_DEFAULTS = dict(repeat=10, warmup=3)
MODEL_DEFAULTS = dict(repeat=5, warmup=2)
# Every FDConv layer of the benchmarked models is in the backbone.
KEEP_FOR_BACKWARD_KEY = 'model.backbone.conv_cfg.keep_for_backward'


def resolve_device(name: str) -> torch.device:
    """'auto': CUDA when available, else the CPU."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = torch.device(name)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'--device {name}: CUDA is not available on this machine')
    return device


def run_suite(
    device: torch.device,
    layers: bool = True,
    models: bool = True,
    repeat: Optional[int] = None,
    warmup: Optional[int] = None,
    image_size: Optional[int] = None,
    fdconv_options: Optional[Dict[str, Any]] = None,
    compile_layers: bool = False,
    keep_for_backward: bool = False,
    layer_batch: int = 2,
    full_resolution: bool = False,
    model_names: Optional[Sequence[str]] = None,
    train_batch: int = 2,
    infer_batch: int = 1,
    compile_models: bool = False,
) -> Dict[str, Any]:
    """Run the layer and/or model benchmarks; ``repeat``/``warmup`` None: per-part defaults,
    ``image_size`` None: each model's reduced size; ``fdconv_options``: merged into the
    FDConv model configs; ``compile_layers``: time the layers under ``torch.compile``;
    ``keep_for_backward``: FDConv's speed mode in the layers and the models' backbones;
    ``layer_batch``: the layers' batch size; ``full_resolution``: the layer shapes at the
    800 x 1216 strides (:data:`RESNET50_DETECTION_SHAPES_FULL`); ``model_names``: keys of
    ``model_benchmark.MODEL_CHOICES`` (None: ``DEFAULT_MODELS``); ``train_batch`` /
    ``infer_batch``: the models' batch sizes; ``compile_models``: every model's backbone
    under ``torch.compile``."""
    results: Dict[str, Any] = dict(
        machine=machine_info(device), memory_method=MEMORY_METHODS[device.type]
    )
    if layers:
        shapes = RESNET50_DETECTION_SHAPES_FULL if full_resolution else RESNET50_DETECTION_SHAPES
        results['layers'] = benchmark_layers(
            device,
            shapes,
            batch_size=layer_batch,
            repeat=repeat or LAYER_DEFAULTS['repeat'],
            warmup=LAYER_DEFAULTS['warmup'] if warmup is None else warmup,
            compile_layers=compile_layers,
            fdconv_options=dict(keep_for_backward=True) if keep_for_backward else None,
        )
    if models:
        # imports mmdet and mmseg
        from .model_benchmark import DEFAULT_MODELS, MODEL_CHOICES, benchmark_models

        if keep_for_backward:
            fdconv_options = {**(fdconv_options or {}), KEEP_FOR_BACKWARD_KEY: True}

        results['models'] = benchmark_models(
            device,
            pairs=[MODEL_CHOICES[name] for name in model_names or DEFAULT_MODELS],
            train_batch=train_batch,
            infer_batch=infer_batch,
            compile_backbone=compile_models,
            repeat=repeat or MODEL_DEFAULTS['repeat'],
            warmup=MODEL_DEFAULTS['warmup'] if warmup is None else warmup,
            image_size=image_size,
            fdconv_options=fdconv_options,
        )
    results['machine']['load_average_1min_end'] = machine_info(device)['load_average_1min']
    return results


def format_report(results: Dict[str, Any]) -> str:
    """The tables, with the machine and how the memory was measured."""
    parts = [f"Machine: {describe(results['machine'])}"]
    if 'layers' in results:
        compiled = ', every layer torch.compile-d' if results['layers'].get('compiled') else ''
        if results['layers'].get('fdconv_options'):
            compiled += f", FDConv options {results['layers']['fdconv_options']}"
        parts += [
            'Layers: FDConv(cin, cout, k, padding=k//2, kernel_num=64) vs nn.Conv2d, '
            f'medians; train = forward + backward{compiled}',
            layer_table(results['layers']),
        ]
    if 'models' in results:
        compiled = (
            ', every backbone torch.compile-d'
            if any(row.get('compiled') for row in results['models'])
            else ''
        )
        parts += [
            'Models: train iter = model.train_step (SGD), inference = model.test_step; '
            f'backbones alone: forward + mean of the outputs + backward + SGD{compiled}',
            model_table(results['models']),
        ]
    parts.append(f"Peak memory: {results['memory_method']}.")
    return '\n\n'.join(parts)
