"""Small helpers of the FDConv layers: kernel-size pairs and the export check."""

from typing import Tuple, Union

import torch

IntOrPair = Union[int, Tuple[int, int]]


def to_pair(value: IntOrPair) -> Tuple[int, int]:
    """``3 -> (3, 3)``; a pair stays as it is."""
    if isinstance(value, int):
        return value, value
    first, second = value
    return first, second


def is_exporting() -> bool:
    """Whether an ONNX (or ``torch.export``) export is tracing the model.

    ``torch.onnx.is_in_onnx_export()`` is set by both ONNX exporters of torch 2.13
    (``dynamo=False`` also sets ``torch.jit.is_tracing()``, ``dynamo=True`` also
    ``torch.compiler.is_exporting()`` and ``is_compiling()``); ``is_exporting()`` alone
    marks a plain ``torch.export.export``, which cannot take the training path either.
    """
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()
