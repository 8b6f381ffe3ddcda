"""Where FDConv's time goes: torch.profiler's operator times, summed into a few kinds.

``tools/benchmark.py --profile`` profiles each ResNet-50 layer shape at the stage strides
of a 512 x 512 image (:data:`RESNET50_512_SHAPES`), FDConv against ``nn.Conv2d``, and the
ResNet-50 backbone pair of ``--models resnet50``: inference (eval, no grad) and training
step (forward + backward), each operator's self time attributed to one of
:data:`OP_KINDS`. The profiler adds a little time of its own to every operator call: the
totals are for proportions, :mod:`.layer_benchmark` and :mod:`.model_benchmark` for times.
"""

from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from .layer_benchmark import LAYER_BUILDERS, RESNET50_DETECTION_SHAPES, LayerShape
from .tables import format_table

# The six layer shapes of RESNET50_DETECTION_SHAPES at their stage strides in a 512 x 512 image.
RESNET50_512_SHAPES = tuple(
    replace(shape, height=512 // stride, width=512 // stride)
    for shape, stride in zip(RESNET50_DETECTION_SHAPES, (4, 8, 16, 32, 16, 32))
)

# Operator kinds, by the first name fragment an aten operator name contains; the rest is
# 'other'. 'conv' holds every convolution (FBM's and KSM-local's small ones included),
# 'matmul' mm and bmm (FBM's low-pass projections).
OP_KINDS = {
    'conv': ('conv',),
    'fft': ('_fft_',),
    'matmul': ('mm',),
    'gather': ('index', 'gather', 'scatter', 'take'),
    'copy': ('copy', 'clone', 'contiguous', 'cat', 'stack', 'repeat', 'expand'),
    'norm': ('batch_norm', 'layer_norm'),
    'reduce': ('sum', 'mean', 'amax', 'norm'),
    'pointwise': (
        'mul', 'add', 'sub', 'div', 'sigmoid', 'tanh', 'relu', 'clamp', 'where', 'fill',
        'zero', 'neg', 'pow', 'exp', 'glu', 'lerp', 'sqrt', 'threshold',
    ),
}  # fmt: skip
KIND_NAMES = (*OP_KINDS, 'other')


def op_kind(name: str) -> str:
    """The kind (a key of :data:`OP_KINDS`, or 'other') of an operator name."""
    op = name.split('::')[-1]
    for kind, fragments in OP_KINDS.items():
        if any(fragment in op for fragment in fragments):
            return kind
    return 'other'


def profile_step(step: Callable[[], object], runs: int = 2, warmup: int = 2) -> Dict[str, float]:
    """Self CPU time per run of ``step``'s operators, ms, by kind, and their ``total``.

    Only ``aten::`` operators count (autograd nodes and Python functions are frames
    around them, whose self time is the profiler's own work).
    """
    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            step()
    times = dict.fromkeys(KIND_NAMES, 0.0)
    for event in prof.key_averages():
        if event.key.startswith('aten::'):
            times[op_kind(event.key)] += event.self_cpu_time_total / 1e3 / runs
    times['total'] = sum(times.values())
    return times


def layer_steps(layer: nn.Module, shape: LayerShape, batch: int) -> Dict[str, Callable]:
    """``inference`` (eval, no grad) and ``train`` (forward + backward) of one layer."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, shape.in_channels, shape.height, shape.width, generator=generator)
    x.requires_grad_()

    def inference() -> None:
        layer.eval()
        with torch.no_grad():
            layer(x)

    def train() -> None:
        layer.train()
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).square().mean().backward()

    return dict(inference=inference, train=train)


def profile_layers(
    shapes: Sequence[LayerShape] = RESNET50_512_SHAPES,
    batch: int = 2,
    runs: int = 2,
    fdconv_options: Optional[Dict[str, Any]] = None,
) -> List[Dict[str, Any]]:
    """Per shape and step: the Conv2d total and FDConv's times by kind (ms per run)."""
    rows = []
    for shape in shapes:
        torch.manual_seed(0)
        plain = LAYER_BUILDERS['Conv2d'](shape)
        fdconv = LAYER_BUILDERS['FDConv'](shape, **(fdconv_options or {}))
        plain_steps = layer_steps(plain, shape, batch)
        fdconv_steps = layer_steps(fdconv, shape, batch)
        for step in ('inference', 'train'):
            plain_times = profile_step(plain_steps[step], runs)
            times = profile_step(fdconv_steps[step], runs)
            rows.append(
                dict(what=str(shape), step=step, conv2d_total=plain_times['total'], **times)
            )
    return rows


def profile_backbones(
    image_size: int = 512, infer_batch: int = 1, train_batch: int = 2, runs: int = 2
) -> List[Dict[str, Any]]:
    """The ResNet-50 (UPerNet) backbone pair: FDConv's times by kind and the plain one's."""
    from .model_benchmark import MODEL_CHOICES, build_model, config_path

    pair = MODEL_CHOICES['resnet50']
    rows = []
    for step, batch in (('inference', infer_batch), ('train', train_batch)):
        row: Dict[str, Any] = dict(what=f'{pair.name} {batch}x{image_size}^2', step=step)
        for name, config in (('plain', pair.baseline_config), ('fdconv', pair.fdconv_config)):
            torch.manual_seed(0)
            backbone, _ = build_model(config_path(config), image_size, part='backbone')
            x = torch.randn(batch, 3, image_size, image_size)

            def run(backbone: nn.Module = backbone, x: torch.Tensor = x, step: str = step):
                if step == 'inference':
                    backbone.eval()
                    with torch.no_grad():
                        backbone(x)
                    return
                backbone.train()
                backbone.zero_grad(set_to_none=True)
                sum(out.mean() for out in backbone(x)).backward()

            times = profile_step(run, runs)
            if name == 'plain':
                row['conv2d_total'] = times['total']
            else:
                row.update(times)
        rows.append(row)
    return rows


def profile_table(rows: Sequence[Dict[str, Any]]) -> str:
    """Markdown: per row the plain total, FDConv's total, its ratio and its kinds (ms)."""
    headers = ['what', 'step', 'plain ms', 'FDConv ms', 'ratio', *KIND_NAMES]
    return format_table(
        headers,
        [
            [
                row['what'],
                row['step'],
                row['conv2d_total'],
                row['total'],
                row['total'] / row['conv2d_total'],
                *(row[kind] for kind in KIND_NAMES),
            ]
            for row in rows
        ],
    )
