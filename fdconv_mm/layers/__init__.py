"""Pure-PyTorch FDConv layers: they import nothing but torch."""

from .convert import convert_to_fdconv
from .fbm import FrequencyBandModulation
from .fdconv import FDConv
from .fdconv_linear import FDConvLinear
from .frequency import (
    band_masks,
    frequency_group_index,
    kernel_to_spectrum,
    lowpass_masks,
    spectrum_to_kernel,
)
from .helpers import is_exporting
from .ksm import KernelSpatialModulationGlobal, KernelSpatialModulationLocal, StarReLU
from .options import is_fdconv_active

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
    'is_exporting',
    'frequency_group_index',
    'kernel_to_spectrum',
    'lowpass_masks',
    'spectrum_to_kernel',
]
