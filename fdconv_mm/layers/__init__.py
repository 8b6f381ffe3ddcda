"""Pure-PyTorch FDConv layers: they import nothing but torch."""

from .convert import convert_to_fdconv
from .fbm import FrequencyBandModulation
from .fdconv import FDConv, FDConvLinear, is_fdconv_active
from .frequency import (
    band_masks,
    frequency_group_index,
    kernel_to_spectrum,
    lowpass_masks,
    spectrum_to_kernel,
)
from .ksm import KernelSpatialModulationGlobal, KernelSpatialModulationLocal, StarReLU
from .onnx_export import export_onnx, is_exporting

__all__ = [
    'FDConv',
    'FDConvLinear',
    'is_fdconv_active',
    'convert_to_fdconv',
    'FrequencyBandModulation',
    'KernelSpatialModulationGlobal',
    'KernelSpatialModulationLocal',
    'StarReLU',
    'band_masks',
    'export_onnx',
    'is_exporting',
    'frequency_group_index',
    'kernel_to_spectrum',
    'lowpass_masks',
    'spectrum_to_kernel',
]
