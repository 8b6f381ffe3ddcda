"""Parameters and FLOPs of models with FDConv, its FFTs and element-wise work included.

The method: mmengine's ``FlopAnalyzer`` traces the model (fvcore's counting: 1 flop = 1
multiply-add; convs, linear layers, matmuls and norms counted, element-wise ops not), plus

* FFT handles (:mod:`.fft_flops`): a real FFT of ``n`` points costs ``1.25 n log2 n``
  flops, a complex one ``2.5 n log2 n`` (half the classic ``5 n log2 n`` real operations);
* per active FDConv call, by forward hooks (:mod:`.fdconv_flops`), the element-wise work
  that defines it: spectrum mixing ``2 B P N``, kernel modulation ``B Cout Cin k^2`` per
  attention factor, FBM band weighting ``B Cin H W`` per weighted band.

FDConv's convolutions (per-sample conv, KSM, FBM) are counted by the tracer alone.
Importing this package imports mmengine (``import fdconv_mm`` alone does not).
"""

from .baseline import plain_layer, replace_fdconv_with_plain
from .complexity import (
    ComplexityReport,
    analyze_complexity,
    format_count,
    format_report,
    plain_conv_params,
)
from .fdconv_flops import (
    ELEMENTWISE_TERMS,
    fdconv_elementwise_flops,
    is_active_fdconv,
    record_fdconv_elementwise,
)
from .fft_flops import FFT_OP_HANDLES, fft_flop_handle, fft_flops
from .model_from_config import (
    DEFAULT_SHAPES,
    ConfigAnalysis,
    analyze_config,
    analyze_model,
    build_model,
    dummy_batch,
    read_config,
    resolve_config_path,
)

__all__ = [
    'DEFAULT_SHAPES',
    'ELEMENTWISE_TERMS',
    'FFT_OP_HANDLES',
    'ComplexityReport',
    'ConfigAnalysis',
    'analyze_complexity',
    'analyze_config',
    'analyze_model',
    'build_model',
    'dummy_batch',
    'fdconv_elementwise_flops',
    'fft_flop_handle',
    'fft_flops',
    'format_count',
    'format_report',
    'is_active_fdconv',
    'plain_conv_params',
    'plain_layer',
    'read_config',
    'record_fdconv_elementwise',
    'replace_fdconv_with_plain',
    'resolve_config_path',
]
