"""Speed and memory of FDConv against nn.Conv2d, and of FDConv models against baselines.

``tools/benchmark.py`` (``make bench``) runs :func:`run_suite` and prints
:func:`format_report`; ``docs/benchmarks.md`` holds the results. The model part imports
mmdet and mmseg; the rest needs only torch.
"""

from .environment import machine_info
from .layer_benchmark import (
    RESNET50_DETECTION_SHAPES,
    FourierKernelFloor,
    LayerShape,
    benchmark_layers,
    geometric_mean,
    measure_layer,
)
from .suite import format_report, resolve_device, run_suite
from .tables import format_table, layer_table, model_table
from .timing import MEMORY_METHODS, Timing, measure_peak_memory, measure_time

__all__ = [
    'MEMORY_METHODS',
    'RESNET50_DETECTION_SHAPES',
    'FourierKernelFloor',
    'LayerShape',
    'Timing',
    'benchmark_layers',
    'format_report',
    'format_table',
    'geometric_mean',
    'layer_table',
    'machine_info',
    'measure_layer',
    'measure_peak_memory',
    'measure_time',
    'model_table',
    'resolve_device',
    'run_suite',
]
