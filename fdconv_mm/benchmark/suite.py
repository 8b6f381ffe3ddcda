"""The whole benchmark: layers and models, as one JSON-able dict and one text report."""

from typing import Any, Dict, Optional

import torch

from .environment import describe, machine_info
from .layer_benchmark import benchmark_layers
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
) -> Dict[str, Any]:
    """Run the layer and/or model benchmarks; ``repeat``/``warmup`` None: per-part defaults,
    ``image_size`` None: each model's reduced size; ``fdconv_options``: merged into the
    FDConv model configs; ``compile_layers``: time the layers under ``torch.compile``;
    ``keep_for_backward``: FDConv's speed mode in the layers and the models' backbones."""
    results: Dict[str, Any] = dict(
        machine=machine_info(device), memory_method=MEMORY_METHODS[device.type]
    )
    if layers:
        results['layers'] = benchmark_layers(
            device,
            repeat=repeat or LAYER_DEFAULTS['repeat'],
            warmup=LAYER_DEFAULTS['warmup'] if warmup is None else warmup,
            compile_layers=compile_layers,
            fdconv_options=dict(keep_for_backward=True) if keep_for_backward else None,
        )
    if models:
        from .model_benchmark import benchmark_models  # imports mmdet and mmseg

        if keep_for_backward:
            fdconv_options = {**(fdconv_options or {}), KEEP_FOR_BACKWARD_KEY: True}

        results['models'] = benchmark_models(
            device,
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
        parts += [
            'Models: train iter = model.train_step (SGD), inference = model.test_step',
            model_table(results['models']),
        ]
    parts.append(f"Peak memory: {results['memory_method']}.")
    return '\n\n'.join(parts)
