"""ONNX Runtime CPU inference of the demo detector's backbone, FDConv against plain convs.

``tools/benchmark.py --onnx``. Each variant's backbone (the demo Faster R-CNN's ResNet-18 at
half width: with FDConv as configured, and the same config with ``conv_cfg=None``) is built
with its weights as constructed, exported with :func:`fdconv_mm.deployment.export_onnx` at a
fixed ``batch x 3 x S x S`` (timed once: *export s*) and run by an ONNX Runtime CPU session
with ``threads`` intra-op threads; PyTorch's eager forward (no autograd) on the same input is
timed beside it. All four steps run in alternating rounds
(:func:`~.timing.measure_interleaved`): medians.

Importing this module imports torch only; running it imports mmdet, onnx and onnxruntime.
"""

import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from .environment import describe, machine_info
from .tables import format_table
from .timing import measure_interleaved

DEMO_DETECTOR = 'demo/faster-rcnn_r18-fdconv_fpn_demo-shapes.py'
# The variants: name and the --cfg-options that make them from the FDConv config.
VARIANTS = (('baseline', {'model.backbone.conv_cfg': None}), ('FDConv', {}))
ONNX_DEFAULTS = dict(repeat=20, warmup=3, image_size=128, batch=1)


def prepare_variant(
    config: str, options: Dict[str, Any], image_size: int, batch: int, out: Path, threads: int
) -> Dict[str, Any]:
    """Build, export and load one variant's backbone; check ONNX Runtime against PyTorch.

    Returns:
        dict: ``module``, ``inputs``, ``session``, ``feed`` (what the timed steps use) and the
        row's ``params_m``, ``onnx_mb``, ``export_s``, ``max_relative_difference``.
    """
    from ..deployment import (
        BackboneFeatures,
        build_config_model,
        export_onnx,
        max_relative_difference,
        onnxruntime_session,
        random_inputs,
        torch_outputs,
    )

    model, _ = build_config_model(config, cfg_options=options or None)
    module = BackboneFeatures(model.backbone).eval()
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


def benchmark_onnx_backbones(
    config: Optional[str] = None,
    image_size: int = ONNX_DEFAULTS['image_size'],
    batch: int = ONNX_DEFAULTS['batch'],
    repeat: int = ONNX_DEFAULTS['repeat'],
    warmup: int = ONNX_DEFAULTS['warmup'],
    threads: int = 2,
    onnx_dir: Optional[str] = None,
) -> Dict[str, Any]:
    """Time the ONNX Runtime and PyTorch CPU inference of each variant's backbone.

    Args:
        config (str, optional): The FDConv config; None: the demo detector's.
        image_size (int): Square input size. Defaults to 128 (the demo's).
        batch (int): Batch size (fixed in the files). Defaults to 1.
        repeat (int): Timed rounds. Defaults to 20.
        warmup (int): Untimed rounds first. Defaults to 3.
        threads (int): ONNX Runtime intra-op threads (set torch's with
            ``torch.set_num_threads``). Defaults to 2.
        onnx_dir (str, optional): Keep the ``.onnx`` files here; None: a temporary folder.

    Returns:
        dict: ``config``, ``image_size``, ``batch``, ``threads`` and ``rows``: per variant
        ``variant``, ``params_m``, ``onnx_mb``, ``export_s``, ``onnxruntime_ms``, ``torch_ms``,
        ``max_relative_difference``; then ``onnxruntime_ms_ratio`` and ``torch_ms_ratio``
        (FDConv / baseline).
    """
    from .model_benchmark import config_path

    config = config or config_path(DEMO_DETECTOR)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(onnx_dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        prepared = {
            name: prepare_variant(
                config, options, image_size, batch, folder / f'{name}_backbone.onnx', threads
            )
            for name, options in VARIANTS
        }
        steps = {}
        for name, variant in prepared.items():
            steps[f'{name} onnxruntime'] = lambda v=variant: v['session'].run(None, v['feed'])
            steps[f'{name} torch'] = lambda v=variant: _torch_forward(v)
        timings = measure_interleaved(steps, torch.device('cpu'), repeat, warmup)
    rows: List[Dict[str, Any]] = []
    for name, variant in prepared.items():
        rows.append(
            dict(
                variant=name,
                params_m=variant['params_m'],
                onnx_mb=variant['onnx_mb'],
                export_s=variant['export_s'],
                onnxruntime_ms=timings[f'{name} onnxruntime'].median_ms,
                torch_ms=timings[f'{name} torch'].median_ms,
                max_relative_difference=variant['max_relative_difference'],
            )
        )
    by_name = {row['variant']: row for row in rows}
    return dict(
        config=config,
        image_size=image_size,
        batch=batch,
        threads=threads,
        repeat=repeat,
        rows=rows,
        onnxruntime_ms_ratio=by_name['FDConv']['onnxruntime_ms']
        / by_name['baseline']['onnxruntime_ms'],
        torch_ms_ratio=by_name['FDConv']['torch_ms'] / by_name['baseline']['torch_ms'],
    )


def _torch_forward(variant: Dict[str, Any]) -> None:
    with torch.no_grad():
        variant['module'](variant['inputs'])


def onnx_table(result: Dict[str, Any]) -> str:
    """Baseline and FDConv rows, then FDConv / baseline."""
    headers = [
        'backbone', 'input', 'params M', 'ONNX MB', 'export s', 'ONNX Runtime ms', 'PyTorch ms',
        'ORT / PyTorch', 'max rel. diff',
    ]  # fmt: skip
    shape = f"{result['batch']} x 3 x {result['image_size']}^2"
    rows: List[List[Any]] = []
    for r in result['rows']:
        rows.append(
            [
                r['variant'], shape, r['params_m'], r['onnx_mb'], r['export_s'],
                r['onnxruntime_ms'], r['torch_ms'], r['onnxruntime_ms'] / r['torch_ms'],
                f"{r['max_relative_difference']:.1e}",
            ]
        )  # fmt: skip
    baseline, fdconv = result['rows'][0], result['rows'][1]
    rows.append(
        [
            'FDConv / baseline', shape, fdconv['params_m'] / baseline['params_m'],
            fdconv['onnx_mb'] / baseline['onnx_mb'], fdconv['export_s'] / baseline['export_s'],
            result['onnxruntime_ms_ratio'],
            result['torch_ms_ratio'], '', '',
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
            f"(no autograd) inference of the demo detector's backbone, medians of "
            f"{onnx['repeat']} rounds; max rel. diff = max|onnx - torch| / max|torch| over "
            'the outputs',
            onnx_table(onnx),
        ]
    )
