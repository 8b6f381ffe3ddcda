"""Export a module of one image tensor to ONNX, check the file and run it in ONNX Runtime.

The difference between ONNX Runtime and PyTorch is measured per output as
``max|onnx - torch| / max|torch|`` (the largest error relative to the output's largest
magnitude; the absolute error where the output is all zeros), and summarized as the largest
of these over the outputs (:func:`relative_differences`, :func:`max_relative_difference`).

``onnx`` and ``onnxruntime`` (``pip install -e .[deploy]``) are imported when used.
"""

import re
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from .wrappers import output_names

PathLike = Union[str, Path]
INPUT_NAME = 'inputs'
OPSET = 18
EXPORTERS = ('dynamo', 'torchscript')
# The exporter colours its messages for terminals.
ANSI_ESCAPE = re.compile(r'\x1b\[[0-9;]*m')


class ExportError(RuntimeError):
    """torch's ONNX exporter could not translate the module, or ONNX Runtime not run it."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message, without terminal colour codes."""
    text = ANSI_ESCAPE.sub('', str(error)).strip()
    return text.splitlines()[0] if text else ''


def export_model(
    model: nn.Module,
    args: Tuple[Any, ...],
    f: Any,
    *,
    dynamic_hw: bool = False,
    dynamo: bool = True,
    opset_version: int = OPSET,
    input_names: Sequence[str] = ('input',),
    output_names: Optional[Sequence[str]] = None,
    keep_metadata: bool = False,
    **kwargs: Any,
) -> Any:
    """``torch.onnx.export`` with what FDConv models need; pure torch.

    The model is exported in eval mode, without gradients, and left in its mode
    afterwards; the file holds its weights (no external data). Every active FDConv in
    it takes its export path by itself (``fdconv_mm.layers.reference`` with real-arithmetic
    transforms): these are only the exporter's arguments. The batch size of ``args[0]``
    is fixed in the file.

    Args:
        model (nn.Module): Any model; its FDConv layers export through this module.
        args (tuple): Example inputs; ``args[0]`` is the image batch (B, C, H, W).
        f (str | PathLike): The ``.onnx`` file, written with its weights inside.
        dynamic_hw (bool): Export height and width of ``args[0]`` as dynamic
            (dynamo exporter only), over the range the model's code allows (the demo
            ResNet-18 backbone: 33 pixels and more, its last FBM map then at least
            2 x 2). Defaults to False.
        dynamo (bool): The exporter: True (torch's default, ``torch.export``) or False
            (TorchScript tracing, as mmdeploy). Defaults to True.
        opset_version (int): ONNX opset. Defaults to 18.
        input_names (Sequence[str]): Names of the graph inputs. Defaults to ('input',).
        output_names (Sequence[str] | None): Names of the outputs. Defaults to None.
        keep_metadata (bool): Keep the dynamo exporter's per-node metadata (stack
            traces, module names: a third of the file of a small backbone).
            Defaults to False.
        **kwargs: Passed on to ``torch.onnx.export`` (``optimize`` defaults to False
            here: onnxscript's optimizer triples the export time).

    Returns:
        The ``ONNXProgram`` (dynamo) or None.
    """
    if dynamic_hw and not dynamo:
        raise ValueError(
            'export_onnx(dynamic_hw=True) needs dynamo=True: the TorchScript exporter '
            'traces FDConv at fixed sizes'
        )
    options = dict(
        opset_version=opset_version,
        input_names=list(input_names),
        output_names=None if output_names is None else list(output_names),
        dynamo=dynamo,
    )
    if dynamo:
        # onnxscript's graph rewriter takes most of the export time (49 of 78 s for the
        # demo ResNet-18) for a 5 % smaller file; ONNX Runtime optimizes at load anyway.
        options.update(optimize=False)
    if dynamo and dynamic_hw:
        # DYNAMIC, not a named Dim: the model's own guards narrow the range (e.g. a
        # 1-pixel map refused) instead of failing the export or making it static.
        sizes = {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
        options.update(dynamic_shapes=(sizes, *([None] * (len(args) - 1))))
    options.update(kwargs)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if not dynamo:
                return torch.onnx.export(model, tuple(args), f, **options)
            program = torch.onnx.export(model, tuple(args), **options)
    finally:
        model.train(training)
    if not keep_metadata:
        for node in program.model.graph.all_nodes():
            node.metadata_props.clear()
    program.save(f, external_data=False)
    return program


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

    Runs :func:`export_model` (``torch.onnx.export`` in eval mode without autograd; every
    active FDConv takes its export path by itself), silently, and names the outputs.

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
            loads it anyway. Defaults to False, as :func:`export_model`.

    Returns:
        list[str]: The output names, in order.

    Raises:
        ValueError: For an unknown exporter, or ``dynamic_hw`` with 'torchscript'.
        ExportError: If the exporter fails, with its first line.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if dynamic_hw and exporter != 'dynamo':
        raise ValueError('--dynamic-hw needs --exporter dynamo (TorchScript traces fixed sizes)')
    names = list(output_names(module, len(torch_outputs(module, inputs))))
    options = dict(optimize=optimize) if exporter == 'dynamo' else {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        export_model(
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
