"""ONNX export of FDConv models: a config's backbone or model, checked against PyTorch.

``tools/deployment/export_onnx.py`` runs :func:`export_config`. Importing this package
imports torch only; building models imports mmengine with mmdet or mmseg, and exporting
and checking import ``onnx``, ``onnxscript`` and ``onnxruntime`` (``pip install -e .[deploy]``).
"""

from .config_export import (
    DEFAULT_TOLERANCE,
    ExportReport,
    build_config_model,
    export_config,
    image_inputs,
    parse_shape,
    random_inputs,
)
from .onnx_export import (
    EXPORTERS,
    OPSET,
    ExportError,
    check_onnx,
    export_model,
    export_onnx,
    input_dims,
    max_relative_difference,
    onnxruntime_session,
    relative_differences,
    run_onnxruntime,
    torch_outputs,
)
from .wrappers import (
    PARTS,
    BackboneFeatures,
    DetectorFeatures,
    SegmentorLogits,
    exportable_part,
    output_names,
)

__all__ = [
    'DEFAULT_TOLERANCE',
    'EXPORTERS',
    'OPSET',
    'PARTS',
    'BackboneFeatures',
    'DetectorFeatures',
    'ExportError',
    'ExportReport',
    'SegmentorLogits',
    'build_config_model',
    'check_onnx',
    'export_config',
    'export_model',
    'export_onnx',
    'exportable_part',
    'image_inputs',
    'input_dims',
    'max_relative_difference',
    'onnxruntime_session',
    'output_names',
    'parse_shape',
    'random_inputs',
    'relative_differences',
    'run_onnxruntime',
    'torch_outputs',
]
