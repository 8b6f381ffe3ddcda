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

from .wrappers import output_names

PathLike = Union[str, Path]
INPUT_NAME = 'inputs'
OPSET = 18
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
) -> List[str]:
    """Write ``module(inputs)`` as an ONNX file (weights inside it) with torch's exporter.

    Args:
        module (nn.Module): In eval mode; ``(B, 3, H, W) -> tensor or tuple of tensors``.
        inputs (Tensor): An example input ``(B, 3, H, W)``; B is fixed in the file.
        path (str | Path): The ``.onnx`` file to write (its folder is created).
        opset (int): ONNX opset. Defaults to :data:`OPSET`.
        dynamic_hw (bool): Leave height and width dynamic in the graph. Defaults to False.

    Returns:
        list[str]: The output names, in order.

    Raises:
        ExportError: If the exporter fails, with its first line.
    """
    names = list(output_names(module, len(torch_outputs(module, inputs))))
    dynamic_shapes = None
    if dynamic_hw:
        dim = torch.export.Dim
        dynamic_shapes = {INPUT_NAME: {2: dim('height', min=1), 3: dim('width', min=1)}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad():
            torch.onnx.export(
                module,
                (inputs,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=names,
                opset_version=opset,
                dynamo=True,
                external_data=False,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
    except Exception as error:  # the exporter raises many types; keep its message
        what = getattr(module, 'description', lambda: type(module).__name__)()
        raise ExportError(
            f'torch.onnx.export of {what} failed: {type(error).__name__}: {first_line(error)}'
        ) from error
    return names


def check_onnx(path: PathLike) -> None:
    """``onnx.checker.check_model`` on the file, with shape inference (full check)."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


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
