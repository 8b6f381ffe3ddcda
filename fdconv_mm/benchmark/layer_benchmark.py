"""FDConv against ``nn.Conv2d`` of the same shape: forward, training step, peak memory.

The shapes are ResNet-50's in Faster R-CNN at about 800 x 1216 (batch 2, stride 1,
padding ``k // 2``), the layer built with the released options
``FDConv(cin, cout, k, padding=k // 2, kernel_num=64)``. :class:`FourierKernelFloor`
times the least that FDConv's definition adds to a conv, a yardstick for how much of
FDConv's time is overhead.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


class FourierKernelFloor(nn.Module):
    """Per-sample kernels from one ``irfft2`` of a weight spectrum, and the per-sample conv.

    What any FDConv implementation computes at least (docs/spec.md section 4): each sample's
    ``(Cout*k) x (Cin*k)`` kernel matrix as the inverse real FFT of its own spectrum, and
    each sample convolved with its kernel (one grouped conv); the backward pass adds the
    per-sample weight gradients and their ``rfft2``. Nothing else: no KSM (a per-sample
    scale of the spectrum stands in for the attentions), no FBM, no frequency groups, the
    ``irfft2`` output used as the conv weight without its permutation, and the kernels
    kept for the backward pass (FDConv rebuilds them there to save memory).

    Args:
        in_channels, out_channels, kernel_size (int): The conv's shape (stride 1,
            padding ``k // 2``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.matrix_size = (out_channels * kernel_size, in_channels * kernel_size)
        rows, cols = self.matrix_size
        self.spectrum = nn.Parameter(torch.randn(rows, cols // 2 + 1, 2))

    def forward(self, x: Tensor) -> Tensor:
        """(B, Cin, H, W) -> (B, Cout, H, W)."""
        batch, in_channels, height, width = x.shape
        k = self.kernel_size
        sample_scale = x.mean((1, 2, 3)).view(batch, 1, 1)
        kernels = torch.fft.irfft2(
            torch.view_as_complex(self.spectrum) * sample_scale, s=self.matrix_size
        )
        weight = kernels.view(-1, in_channels, k, k)
        out = F.conv2d(x.reshape(1, -1, height, width), weight, None, 1, k // 2, 1, batch)
        return out.view(batch, -1, *out.shape[-2:])


RESNET50_DETECTION_SHAPES = (
    LayerShape(64, 64, 3, 100, 152),
    LayerShape(128, 128, 3, 50, 76),
    LayerShape(256, 256, 3, 25, 38),
    LayerShape(512, 512, 3, 13, 19),
    LayerShape(256, 1024, 1, 25, 38),
    LayerShape(2048, 512, 1, 13, 19),
)
# The same six layers at the stage strides of an 800 x 1216 input (4, 8, 16, 32): twice the
# maps above, for a GPU, where the smaller ones leave the device half idle.
RESNET50_DETECTION_SHAPES_FULL = (
    LayerShape(64, 64, 3, 200, 304),
    LayerShape(128, 128, 3, 100, 152),
    LayerShape(256, 256, 3, 50, 76),
    LayerShape(512, 512, 3, 25, 38),
    LayerShape(256, 1024, 1, 50, 76),
    LayerShape(2048, 512, 1, 25, 38),
)
LAYER_BUILDERS: Dict[str, Callable[..., nn.Module]] = {
    'Conv2d': lambda s: nn.Conv2d(
        s.in_channels, s.out_channels, s.kernel_size, padding=s.kernel_size // 2
    ),
    'FDConv': lambda s, **options: FDConv(
        s.in_channels,
        s.out_channels,
        s.kernel_size,
        padding=s.kernel_size // 2,
        kernel_num=64,
        **options,
    ),
    'floor': lambda s: FourierKernelFloor(s.in_channels, s.out_channels, s.kernel_size),
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
    compile_layers: bool = False,
    fdconv_options: Optional[Dict[str, Any]] = None,
) -> Dict[str, object]:
    """Every shape with :data:`LAYER_BUILDERS`, and the FDConv / Conv2d ratios.

    ``fdconv_options`` are further FDConv options, e.g. ``dict(keep_for_backward=True)``.

    With ``compile_layers``, every layer is timed as ``torch.compile(layer)`` (inductor), each
    compiled afresh for its static shape; the warm-up runs include the compilations.

    Returns:
        dict: ``rows`` (one dict per shape: the shape, then ``{layer}_{metric}``,
        ``{metric}_ratio`` of FDConv over Conv2d and ``floor_train_ratio``, the
        :class:`FourierKernelFloor`'s training step over Conv2d's), and the geometric
        means ``train_ratio_geomean``, ``forward_ratio_geomean`` and
        ``floor_train_ratio_geomean``.
    """
    rows: List[Dict[str, object]] = []
    for shape in shapes:
        row: Dict[str, object] = dict(asdict(shape))
        for name, build in LAYER_BUILDERS.items():
            torch.manual_seed(0)
            layer = build(shape, **(fdconv_options or {})) if name == 'FDConv' else build(shape)
            if compile_layers:
                torch.compiler.reset()  # a static graph per shape, as a fixed-size model gets
                layer = torch.compile(layer)
            metrics = measure_layer(layer, shape, device, batch_size, repeat, warmup)
            row.update({f'{name}_{key}': value for key, value in metrics.items()})
        for metric in ('forward_ms', 'train_ms', 'train_peak_mb'):
            row[f'{metric}_ratio'] = row[f'FDConv_{metric}'] / row[f'Conv2d_{metric}']
        row['floor_train_ratio'] = row['floor_train_ms'] / row['Conv2d_train_ms']
        rows.append(row)
    return dict(
        batch_size=batch_size,
        compiled=compile_layers,
        fdconv_options=dict(fdconv_options or {}),
        rows=rows,
        train_ratio_geomean=geometric_mean([row['train_ms_ratio'] for row in rows]),
        forward_ratio_geomean=geometric_mean([row['forward_ms_ratio'] for row in rows]),
        floor_train_ratio_geomean=geometric_mean([row['floor_train_ratio'] for row in rows]),
    )
