"""ONNX Runtime CPU inference of FDConv backbones against their plain-conv baselines.

``tools/benchmark.py --onnx``. The backbones (:data:`ONNX_BACKBONES`, ``--onnx-models``):

* ``demo``: the demo Faster R-CNN's ResNet-18 at half width, with FDConv as configured and
  the same config with ``conv_cfg=None``; 128 x 128 (the demo's size);
* ``resnet50``: the UPerNet R50 FDConv config's ResNet-50-V1c against mmseg's plain
  UPerNet R50's (``model_benchmark.MODEL_CHOICES['resnet50']``); 512 x 512 (ADE20K's crop).

Each variant's backbone is built with its weights as constructed
(:func:`~.model_benchmark.build_model`), exported with :func:`fdconv_mm.deployment.export_onnx`
at a fixed ``batch x 3 x S x S`` (timed once: *export s*) and run by an ONNX Runtime CPU
session with ``threads`` intra-op threads; PyTorch's eager forward (no autograd) on the same
input is timed beside it. A backbone's four steps run in alternating rounds
(:func:`~.timing.measure_interleaved`): medians.

Importing this module imports torch only; running it imports mmdet, mmseg, onnx and
onnxruntime.
"""

import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .environment import describe, machine_info
from .tables import format_table
from .timing import measure_interleaved

DEMO_DETECTOR = 'demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py'
# What --onnx-models picks from: each backbone's default square input size.
ONNX_BACKBONES = {'demo': 128, 'resnet50': 512}
ONNX_DEFAULTS = dict(repeat=20, warmup=3, batch=1)


def backbone_variants(backbone: str) -> Tuple[Tuple[str, str, Dict[str, Any]], ...]:
    """A key of :data:`ONNX_BACKBONES`: its variants' ``(name, config, --cfg-options)``,
    ``'baseline'`` (plain convs) then ``'FDConv'``."""
    if backbone == 'demo':
        return (
            ('baseline', DEMO_DETECTOR, {'model.backbone.conv_cfg': None}),
            ('FDConv', DEMO_DETECTOR, {}),
        )
    from .model_benchmark import MODEL_CHOICES

    pair = MODEL_CHOICES[backbone]
    return (('baseline', pair.baseline_config, {}), ('FDConv', pair.fdconv_config, {}))


def prepare_variant(
    config: str, options: Dict[str, Any], image_size: int, batch: int, out: Path, threads: int
) -> Dict[str, Any]:
    """Build, export and load one variant's backbone; check ONNX Runtime against PyTorch.

    Returns:
        dict: ``module``, ``inputs`` ``(batch, 3, S, S)``, ``session``, ``feed`` (what the
        timed steps use) and the row's ``params_m``, ``onnx_mb``, ``export_s``,
        ``max_relative_difference``.
    """
    from ..deployment import (
        BackboneFeatures,
        export_onnx,
        max_relative_difference,
        onnxruntime_session,
        random_inputs,
        torch_outputs,
    )
    from .model_benchmark import build_model

    torch.manual_seed(0)
    backbone, _ = build_model(config, image_size, options, 'backbone')
    module = BackboneFeatures(backbone).eval()
    inputs = random_inputs(batch, (image_size, image_size))
    start = time.perf_counter()
    export_onnx(module, inputs, out)
    export_s = time.perf_counter() - start
    session = onnxruntime_session(out, threads)
    feed = {session.get_inputs()[0].name: inputs.numpy()}
    difference = max_relative_difference(session.run(None, feed), torch_outputs(module, inputs))
    return dict(
        module=module,
        inputs=inputs,
        session=session,
        feed=feed,
        params_m=sum(p.numel() for p in module.parameters()) / 1e6,
        onnx_mb=out.stat().st_size / 2**20,
        export_s=export_s,
        max_relative_difference=difference,
    )


def benchmark_backbone(
    backbone: str, image_size: int, batch: int, repeat: int, warmup: int, threads: int, folder: Path
) -> Dict[str, Any]:
    """Time one backbone's variants (``.onnx`` files written to ``folder``).

    Returns:
        dict: ``backbone``, ``image_size`` and ``rows``: per variant ``variant``, ``config``,
        ``cfg_options``, ``params_m``, ``onnx_mb``, ``export_s``, ``onnxruntime_ms``,
        ``torch_ms``, ``max_relative_difference``; then ``onnxruntime_ms_ratio`` and
        ``torch_ms_ratio`` (FDConv / baseline).
    """
    variants = backbone_variants(backbone)
    prepared = {
        name: prepare_variant(
            config, options, image_size, batch, folder / f'{backbone}_{name}.onnx', threads
        )
        for name, config, options in variants
    }
    steps = {}
    for name, variant in prepared.items():
        steps[f'{name} onnxruntime'] = lambda v=variant: v['session'].run(None, v['feed'])
        steps[f'{name} torch'] = lambda v=variant: _torch_forward(v)
    timings = measure_interleaved(steps, torch.device('cpu'), repeat, warmup)
    rows = [
        dict(
            variant=name,
            config=config,
            cfg_options=options,
            params_m=prepared[name]['params_m'],
            onnx_mb=prepared[name]['onnx_mb'],
            export_s=prepared[name]['export_s'],
            onnxruntime_ms=timings[f'{name} onnxruntime'].median_ms,
            torch_ms=timings[f'{name} torch'].median_ms,
            max_relative_difference=prepared[name]['max_relative_difference'],
        )
        for name, config, options in variants
    ]
    baseline, fdconv = rows
    return dict(
        backbone=backbone,
        image_size=image_size,
        rows=rows,
        onnxruntime_ms_ratio=fdconv['onnxruntime_ms'] / baseline['onnxruntime_ms'],
        torch_ms_ratio=fdconv['torch_ms'] / baseline['torch_ms'],
    )


def benchmark_onnx_backbones(
    backbones: Sequence[str] = tuple(ONNX_BACKBONES),
    image_size: Optional[int] = None,
    batch: int = ONNX_DEFAULTS['batch'],
    repeat: int = ONNX_DEFAULTS['repeat'],
    warmup: int = ONNX_DEFAULTS['warmup'],
    threads: int = 2,
    onnx_dir: Optional[str] = None,
) -> Dict[str, Any]:
    """Time the ONNX Runtime and PyTorch CPU inference of each backbone's variants.

    Args:
        backbones (Sequence[str]): Keys of :data:`ONNX_BACKBONES`, run one after the
            other. Defaults to all.
        image_size (int, optional): Square input size of every backbone; None: each one's
            own (:data:`ONNX_BACKBONES`: 128 demo, 512 ResNet-50).
        batch (int): Batch size (fixed in the files). Defaults to 1.
        repeat (int): Timed rounds. Defaults to 20.
        warmup (int): Untimed rounds first. Defaults to 3.
        threads (int): ONNX Runtime intra-op threads (set torch's with
            ``torch.set_num_threads``). Defaults to 2.
        onnx_dir (str, optional): Keep the ``.onnx`` files here; None: a temporary folder.

    Returns:
        dict: ``batch``, ``threads``, ``repeat`` and ``backbones``: a
        :func:`benchmark_backbone` result per backbone.
    """
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(onnx_dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        results = []
        for backbone in backbones:
            size = image_size or ONNX_BACKBONES[backbone]
            results.append(
                benchmark_backbone(backbone, size, batch, repeat, warmup, threads, folder)
            )
    return dict(batch=batch, threads=threads, repeat=repeat, backbones=results)


def _torch_forward(variant: Dict[str, Any]) -> None:
    with torch.no_grad():
        variant['module'](variant['inputs'])


def onnx_table(result: Dict[str, Any]) -> str:
    """Per backbone its baseline and FDConv rows, then FDConv / baseline."""
    headers = [
        'backbone', 'variant', 'input', 'params M', 'ONNX MB', 'export s', 'ONNX Runtime ms',
        'PyTorch ms', 'ORT / PyTorch', 'max rel. diff',
    ]  # fmt: skip
    rows: List[List[Any]] = []
    for backbone in result['backbones']:
        name = backbone['backbone']
        shape = f"{result['batch']} x 3 x {backbone['image_size']}^2"
        for r in backbone['rows']:
            rows.append(
                [
                    name, r['variant'], shape, r['params_m'], r['onnx_mb'], r['export_s'],
                    r['onnxruntime_ms'], r['torch_ms'], r['onnxruntime_ms'] / r['torch_ms'],
                    f"{r['max_relative_difference']:.1e}",
                ]
            )  # fmt: skip
        baseline, fdconv = backbone['rows']
        rows.append(
            [
                name, 'FDConv / baseline', shape, fdconv['params_m'] / baseline['params_m'],
                fdconv['onnx_mb'] / baseline['onnx_mb'], fdconv['export_s'] / baseline['export_s'],
                backbone['onnxruntime_ms_ratio'], backbone['torch_ms_ratio'], '', '',
            ]
        )  # fmt: skip
    return format_table(headers, rows)


def run_onnx_benchmark(**kwargs: Any) -> Dict[str, Any]:
    """:func:`benchmark_onnx_backbones` (its arguments) with the machine it ran on."""
    results: Dict[str, Any] = dict(machine=machine_info(torch.device('cpu')))
    results['onnx'] = benchmark_onnx_backbones(**kwargs)
    results['machine']['load_average_1min_end'] = machine_info(torch.device('cpu'))[
        'load_average_1min'
    ]
    return results


def format_onnx_report(results: Dict[str, Any]) -> str:
    """The machine, what was timed, and :func:`onnx_table`."""
    onnx = results['onnx']
    return '\n\n'.join(
        [
            f"Machine: {describe(results['machine'])}",
            f"ONNX Runtime (CPU, {onnx['threads']} intra-op threads) against PyTorch eager "
            "(no autograd) inference of backbones (demo: the demo detector's ResNet-18 at half "
            "width; resnet50: the UPerNet R50 configs' ResNet-50-V1c), FDConv and plain convs, "
            f"medians of {onnx['repeat']} rounds; max rel. diff = max|onnx - torch| / "
            'max|torch| over the outputs',
            onnx_table(onnx),
        ]
    )
