"""How long ``torch.compile`` takes on an FDConv layer, and what the compiled step gains.

``tools/benchmark.py --compile-time`` builds ``FDConv(256, 256, 3, padding=1,
kernel_num=64)`` (:data:`COMPILE_SHAPE`), times its first compiled training step (forward +
backward, the compilation included, with inductor's on-disk caches off: what a first
compilation costs), then the compiled and the eager training steps in alternating rounds.
"""

import time
from typing import Any, Dict

import torch
import torch._inductor.config

from .layer_benchmark import LAYER_BUILDERS, LayerShape
from .timing import measure_interleaved

COMPILE_SHAPE = LayerShape(256, 256, 3, 32, 32)


def measure_compile(
    shape: LayerShape = COMPILE_SHAPE,
    batch: int = 2,
    repeat: int = 10,
    warmup: int = 3,
    backend: str = 'inductor',
) -> Dict[str, Any]:
    """Compile time and step times of one FDConv layer (CPU).

    Returns:
        dict: ``compile_s`` (the first compiled step), ``eager_ms`` and ``compiled_ms``
        (medians of the training steps) and ``compiled_ratio`` (compiled over eager).
    """
    torch.manual_seed(0)
    layer = LAYER_BUILDERS['FDConv'](shape)
    x = torch.randn(batch, shape.in_channels, shape.height, shape.width, requires_grad=True)
    torch.compiler.reset()
    compiled = torch.compile(layer, backend=backend)

    def step(module: torch.nn.Module) -> None:
        module(x).square().mean().backward()

    def drop_gradients() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)

    drop_gradients()
    start = time.perf_counter()
    # Without this, a second run reads the kernels an earlier one compiled (4.6 s against 15).
    with torch._inductor.config.patch(force_disable_caches=True):
        step(compiled)
    compile_s = time.perf_counter() - start
    timings = measure_interleaved(
        dict(eager=lambda: step(layer), compiled=lambda: step(compiled)),
        torch.device('cpu'),
        repeat,
        warmup,
        setups=dict(eager=drop_gradients, compiled=drop_gradients),
    )
    eager_ms, compiled_ms = timings['eager'].median_ms, timings['compiled'].median_ms
    return dict(
        shape=str(shape),
        batch=batch,
        backend=backend,
        compile_s=compile_s,
        eager_ms=eager_ms,
        compiled_ms=compiled_ms,
        compiled_ratio=compiled_ms / eager_ms,
    )
