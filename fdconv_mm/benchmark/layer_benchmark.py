"""FDConv against ``nn.Conv2d`` of the same shape: forward, training step, peak memory.

The shapes are ResNet-50's in Faster R-CNN at about 800 x 1216 (batch 2, stride 1,
padding ``k // 2``), the layer built with the released options
``FDConv(cin, cout, k, padding=k // 2, kernel_num=64)``.
"""

import math
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Sequence

import torch
from torch import nn

from ..layers import FDConv
from .timing import measure_peak_memory, measure_time, module_state_tensors


@dataclass(frozen=True)
class LayerShape:
    """A conv of ``in_channels -> out_channels``, ``kernel_size``, on ``height x width``."""

    in_channels: int
    out_channels: int
    kernel_size: int
    height: int
    width: int

    def __str__(self) -> str:
        return (
            f'{self.in_channels}->{self.out_channels} k{self.kernel_size} '
            f'{self.height}x{self.width}'
        )


RESNET50_DETECTION_SHAPES = (
    LayerShape(64, 64, 3, 100, 152),
    LayerShape(128, 128, 3, 50, 76),
    LayerShape(256, 256, 3, 25, 38),
    LayerShape(512, 512, 3, 13, 19),
    LayerShape(256, 1024, 1, 25, 38),
    LayerShape(2048, 512, 1, 13, 19),
)
LAYER_BUILDERS: Dict[str, Callable[[LayerShape], nn.Module]] = {
    'Conv2d': lambda s: nn.Conv2d(
        s.in_channels, s.out_channels, s.kernel_size, padding=s.kernel_size // 2
    ),
    'FDConv': lambda s: FDConv(
        s.in_channels, s.out_channels, s.kernel_size, padding=s.kernel_size // 2, kernel_num=64
    ),
}


def geometric_mean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def measure_layer(
    layer: nn.Module,
    shape: LayerShape,
    device: torch.device,
    batch_size: int = 2,
    repeat: int = 10,
    warmup: int = 3,
) -> Dict[str, float]:
    """Inference forward (eval, no grad) and training step (train, forward + backward).

    The training step back-propagates a fixed random output gradient to the input and
    the parameters; gradients are dropped (untimed) before each step, as
    ``optimizer.zero_grad(set_to_none=True)`` does.

    Returns:
        dict: ``forward_ms``, ``train_ms`` (medians) and ``train_peak_mb``.
    """
    generator = torch.Generator().manual_seed(0)
    size = (batch_size, shape.in_channels, shape.height, shape.width)
    x = torch.randn(size, generator=generator).to(device).requires_grad_()
    layer = layer.to(device)
    with torch.no_grad():
        grad_output = torch.randn_like(layer(x))

    def drop_gradients() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)

    def forward() -> None:
        with torch.no_grad():
            layer(x)

    def train_step() -> None:
        layer(x).backward(grad_output)

    layer.eval()
    forward_time = measure_time(forward, device, repeat, warmup)
    layer.train()
    train_time = measure_time(train_step, device, repeat, warmup, setup=drop_gradients)
    drop_gradients()
    resident = module_state_tensors(layer) + [x, grad_output]
    peak = measure_peak_memory(train_step, device, resident)
    drop_gradients()
    return dict(
        forward_ms=forward_time.median_ms,
        train_ms=train_time.median_ms,
        train_peak_mb=peak / 2**20,
    )


def benchmark_layers(
    device: torch.device,
    shapes: Sequence[LayerShape] = RESNET50_DETECTION_SHAPES,
    batch_size: int = 2,
    repeat: int = 10,
    warmup: int = 3,
) -> Dict[str, object]:
    """Every shape with :data:`LAYER_BUILDERS`, and the FDConv / Conv2d ratios.

    Returns:
        dict: ``rows`` (one dict per shape: the shape, then ``{layer}_{metric}`` and
        ``{metric}_ratio`` of FDConv over Conv2d) and ``train_ratio_geomean``.
    """
    rows: List[Dict[str, object]] = []
    for shape in shapes:
        row: Dict[str, object] = dict(asdict(shape))
        for name, build in LAYER_BUILDERS.items():
            torch.manual_seed(0)
            metrics = measure_layer(build(shape), shape, device, batch_size, repeat, warmup)
            row.update({f'{name}_{key}': value for key, value in metrics.items()})
        for metric in ('forward_ms', 'train_ms', 'train_peak_mb'):
            row[f'{metric}_ratio'] = row[f'FDConv_{metric}'] / row[f'Conv2d_{metric}']
        rows.append(row)
    return dict(
        batch_size=batch_size,
        rows=rows,
        train_ratio_geomean=geometric_mean([row['train_ms_ratio'] for row in rows]),
        forward_ratio_geomean=geometric_mean([row['forward_ms_ratio'] for row in rows]),
    )
