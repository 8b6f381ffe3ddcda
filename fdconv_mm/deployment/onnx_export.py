"""Export a module of one image tensor to ONNX, check the file and run it in ONNX Runtime.

The difference between ONNX Runtime and PyTorch is measured per output as
``max|onnx - torch| / max|torch|`` (the largest error relative to the output's largest
magnitude; the absolute error where the output is all zeros), and summarized as the largest
of these over the outputs (:func:`relative_differences`, :func:`max_relative_difference`).

``onnx`` and ``onnxruntime`` (``pip install -e .[deploy]``) are imported when used.
"""

import re
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..layers.onnx_export import DEFAULT_OPSET
from .wrappers import output_names

PathLike = Union[str, Path]
INPUT_NAME = 'inputs'
OPSET = DEFAULT_OPSET
EXPORTERS = ('dynamo', 'torchscript')
# The exporter colours its messages for terminals.
ANSI_ESCAPE = re.compile(r'\x1b\[[0-9;]*m')


class ExportError(RuntimeError):
    """torch's ONNX exporter could not translate the module, or ONNX Runtime not run it."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message, without terminal colour codes."""
    text = ANSI_ESCAPE.sub('', str(error)).strip()
    return text.splitlines()[0] if text else ''


def export_onnx(
    module: nn.Module,
    inputs: Tensor,
    path: PathLike,
    opset: int = OPSET,
    dynamic_hw: bool = False,
    exporter: str = 'dynamo',
    optimize: bool = False,
) -> List[str]:
    """Write ``module(inputs)`` as one ONNX file (weights inside it).

    Runs :func:`fdconv_mm.layers.export_onnx` (``torch.onnx.export`` in eval mode without
    autograd; every active FDConv takes its export path by itself), silently.

    Args:
        module (nn.Module): ``(B, 3, H, W) -> tensor or tuple of tensors``.
        inputs (Tensor): An example input ``(B, 3, H, W)``; B is fixed in the file.
        path (str | Path): The ``.onnx`` file to write (its folder is created).
        opset (int): ONNX opset. Defaults to :data:`OPSET`.
        dynamic_hw (bool): Leave height and width dynamic in the graph (needs
            ``exporter='dynamo'``). Defaults to False.
        exporter (str): One of :data:`EXPORTERS`: 'dynamo' (``torch.export``, torch's
            default) or 'torchscript' (tracing, as mmdeploy). Defaults to 'dynamo'.
        optimize (bool): Run the dynamo exporter's ONNX graph optimization (onnxscript's
            constant folding and clean-up): about two thirds of an FDConv model's export
            time, for a slightly smaller file; ONNX Runtime optimizes the graph when it
            loads it anyway. Defaults to False, as :func:`fdconv_mm.layers.export_onnx`.

    Returns:
        list[str]: The output names, in order.

    Raises:
        ValueError: For an unknown exporter, or ``dynamic_hw`` with 'torchscript'.
        ExportError: If the exporter fails, with its first line.
    """
    from ..layers import export_onnx as export_fdconv_model

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if dynamic_hw and exporter != 'dynamo':
        raise ValueError('--dynamic-hw needs --exporter dynamo (TorchScript traces fixed sizes)')
    names = list(output_names(module, len(torch_outputs(module, inputs))))
    options = dict(optimize=optimize) if exporter == 'dynamo' else {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        export_fdconv_model(
            module,
            (inputs,),
            str(path),
            dynamic_hw=dynamic_hw,
            dynamo=exporter == 'dynamo',
            opset_version=opset,
            input_names=(INPUT_NAME,),
            output_names=names,
            verbose=False,
            **options,
        )
    except Exception as error:  # the exporters raise many types; keep the message
        what = getattr(module, 'description', lambda: type(module).__name__)()
        raise ExportError(
            f'torch.onnx.export of {what} failed: {type(error).__name__}: {first_line(error)}'
        ) from error
    return names


def check_onnx(path: PathLike) -> None:
    """``onnx.checker.check_model`` on the file, with shape inference (full check)."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


def input_dims(path: PathLike) -> List[Union[int, str]]:
    """The first input's dimensions in the file: sizes, or names of dynamic ones."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    return [dim.dim_param or dim.dim_value for dim in dims]


def onnxruntime_session(path: PathLike, threads: Optional[int] = None, spinning: bool = False):
    """An ONNX Runtime CPU session of the file.

    Args:
        path: The ONNX file.
        threads: Intra-op threads; None: ONNX Runtime's default (one per core).
        spinning: Let idle worker threads spin-wait for the next run (ONNX Runtime's
            default); off here, since spinning threads take the cores from whatever runs
            between two calls (PyTorch, in a comparison). Defaults to False.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no warning per graph node it cannot fold
    if threads is not None:
        options.intra_op_num_threads = threads
    options.add_session_config_entry('session.intra_op.allow_spinning', '1' if spinning else '0')
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=['CPUExecutionProvider']
    )


def run_onnxruntime(path: PathLike, inputs: Tensor, threads: Optional[int] = None) -> List:
    """The file's outputs on ``inputs`` in ONNX Runtime (CPU), as numpy arrays."""
    session = onnxruntime_session(path, threads)
    name = session.get_inputs()[0].name
    return session.run(None, {name: inputs.detach().cpu().numpy()})


def torch_outputs(module: nn.Module, inputs: Tensor) -> List[np.ndarray]:
    """``module(inputs)`` without autograd, as a list of numpy arrays."""
    with torch.no_grad():
        outputs = module(inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return [output.detach().cpu().numpy() for output in outputs]


def relative_differences(outputs: Sequence, references: Sequence) -> List[float]:
    """Per output, ``max|output - reference| / max|reference|`` (float64).

    Raises:
        ValueError: If the counts or shapes differ.
    """
    if len(outputs) != len(references):
        raise ValueError(f'{len(outputs)} outputs against {len(references)} references')
    differences = []
    for index, (output, reference) in enumerate(zip(outputs, references)):
        output, reference = np.asarray(output, np.float64), np.asarray(reference, np.float64)
        if output.shape != reference.shape:
            raise ValueError(
                f'output {index}: shape {output.shape}, reference shape {reference.shape}'
            )
        error = float(np.abs(output - reference).max(initial=0.0))
        scale = float(np.abs(reference).max(initial=0.0))
        differences.append(error / scale if scale > 0 else error)
    return differences


def max_relative_difference(outputs: Sequence, references: Sequence) -> float:
    """The largest of :func:`relative_differences`."""
    return max(relative_differences(outputs, references))
