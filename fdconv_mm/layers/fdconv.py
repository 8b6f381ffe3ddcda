"""FDConv: Frequency Dynamic Convolution, a drop-in replacement for ``nn.Conv2d``.

The module builds the layer (options: :mod:`.options`; state dicts: :mod:`.state_dict`)
and dispatches its forward pass to one of two executions of one function (docs/spec.md):
the fast path (:mod:`.fast_path`, training and inference, hand-written gradients), or the
definition as it reads (:mod:`.reference`) on ``torch.fft`` (``forward_as_specified``,
what ``torch.jit.trace`` records) or, under an ONNX export, on :mod:`.real_fft`. The
attribute names ``dft_weight``, ``KSM_Global``, ``KSM_Local`` and ``FBM`` are the
original's, so that its checkpoints load.
"""

import math
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import reference
from .fast_path import forward_empty, forward_fast
from .fbm import FrequencyBandModulation
from .frequency import frequency_group_index, kernel_to_spectrum, matrix_to_kernel
from .helpers import IntOrPair, is_exporting
from .kernel_synthesis import KernelSynthesis
from .ksm import KernelSpatialModulationGlobal, KernelSpatialModulationLocal
from .options import validate_options
from .real_fft import compact_group_index
from .sample_conv import SampleConvGeometry
from .state_dict import (
    convert_plain_conv,
    frequency_order_mismatch,
    linear_weight_as_conv,
    record_frequency_order,
)

# The modules an active layer adds to nn.Conv2d's parameters (state-dict prefixes).
HEAD_MODULES = ('KSM_Global', 'KSM_Local', 'FBM')


class FDConv(nn.Conv2d):
    """Frequency Dynamic Convolution, a drop-in replacement for ``nn.Conv2d``.

    Chen et al., "Frequency Dynamic Convolution for Dense Image Prediction", CVPR 2025.
    FDConv is active only if ``min(Cin, Cout) > use_fdconv_if_c_gt`` and both kernel
    sides are in ``use_fdconv_if_k_in``; otherwise the layer is exactly ``nn.Conv2d``
    (parameters ``weight`` and ``bias``). Active layers need ``groups=1``. Kernels may be
    non-square: ``(k, 1)`` kernels on ``(B, C, L, 1)`` inputs make a 1-D FDConv. The
    Fourier transforms run in float32 (float64 for float64 inputs) whatever the input
    dtype; the kernel is cast to the input's dtype. What ``nn.Conv2d`` takes works alike:
    ``device``/``dtype`` (every parameter and buffer), meta construction then
    ``to_empty()`` and ``reset_parameters()``, channels-last weights and inputs,
    unbatched ``(Cin, H, W)`` inputs, state dicts of a plain conv (docs/spec.md section 9).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype: As ``nn.Conv2d``.
        **options: FDConv's options, by the original configs' names, e.g.
            ``kernel_num=64`` (``K``, defaults to 4), ``param_ratio`` (``P``, 1),
            ``fbm_cfg`` (dict), ``frequency_order`` ('original'), ``keep_for_backward``
            (False: rebuild the per-sample kernels in the backward pass; True keeps them,
            faster, more memory). All of them, with defaults, in :mod:`.options` and
            docs/spec.md section 1. An unknown name is a TypeError listing the valid ones.

    Example:
        >>> import torch
        >>> from fdconv_mm import FDConv
        >>> conv = FDConv(64, 64, 3, padding=1, kernel_num=64)
        >>> tuple(conv.dft_weight.shape)
        (1, 192, 97, 2)
        >>> tuple(conv(torch.rand(2, 64, 32, 32)).shape)
        (2, 64, 32, 32)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrPair,
        stride: IntOrPair = 1,
        padding: Union[str, IntOrPair] = 0,
        dilation: IntOrPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = 'zeros',
        device: Any = None,
        dtype: Optional[torch.dtype] = None,
        **options: Any,
    ) -> None:
        factory = dict(device=device, dtype=dtype)
        conv_args = (stride, padding, dilation, groups, bias, padding_mode)
        super().__init__(in_channels, out_channels, kernel_size, *conv_args, **factory)
        shape = (in_channels, out_channels, self.kernel_size, self.stride, groups)
        options = validate_options(*shape, options, type(self).__name__)
        self.fdconv_active = options is not None
        if options is None:
            return
        self.kernel_num = options.kernel_num
        self.param_ratio = options.param_ratio
        self.frequency_order = options.frequency_order
        self.convert_param = options.convert_param
        self.keep_for_backward = options.keep_for_backward
        self.alpha = min(in_channels, out_channels) // 2 * self.kernel_num * self.param_ratio
        self.KSM_Global = KernelSpatialModulationGlobal(
            in_channels,
            out_channels,
            self.kernel_size,
            self.kernel_num * self.param_ratio,
            reduction=options.reduction,
            temperature=options.temp,
            kernel_temperature=options.kernel_temp,
            att_multi=options.att_multi,
            act=options.ksm_global_act,
            only_kernel_attention=options.ksm_only_kernel_att,
            **factory,
        )
        fbm = options.fbm_cfg
        self.FBM = (
            FrequencyBandModulation(
                in_channels,
                k_list=fbm['k_list'],
                lowfreq_att=fbm['lowfreq_att'],
                act=fbm['act'],
                spatial_kernel=fbm['spatial_kernel'],
                spatial_group=fbm['spatial_group'],
                **factory,
            )
            if options.use_fbm
            else None
        )
        self.KSM_Local = (
            KernelSpatialModulationLocal(
                in_channels,
                out_channels,
                self.kernel_size,
                att_multi=options.att_multi,
                act=options.ksm_local_act,
                **factory,
            )
            if options.use_ksm_local
            else None
        )
        # Shape-only: rebuilt by reset_parameters, never saved (docs/spec.md section 2).
        self.register_buffer('frequency_groups', self._frequency_groups(), persistent=False)
        self._export_groups: Optional[np.ndarray] = None
        # Static helpers of the fast path (plain attributes: nothing in the state dict).
        self.synthesis = KernelSynthesis(
            out_channels,
            in_channels,
            self.kernel_size,
            self.kernel_num,
            self.param_ratio,
            self.alpha,
            local_act=options.ksm_local_act,
            att_multi=options.att_multi,
        )
        padding = (0, 0) if self._pads_input() else self.padding
        self.conv_geometry = SampleConvGeometry(
            self.kernel_size, self.stride, padding, self.dilation
        )
        if self.convert_param:
            weight = self.weight.detach()
            del self.weight
            self.dft_weight = nn.Parameter(
                kernel_to_spectrum(weight, self.param_ratio).to(weight.dtype)
            )

    # ------------------------------------------------------------------ construction

    @property
    def matrix_size(self) -> Tuple[int, int]:
        """``(Cout*kh, Cin*kw)``, the kernel matrix of docs/spec.md section 4."""
        return self.out_channels * self.kernel_size[0], self.in_channels * self.kernel_size[1]

    def _frequency_groups(self) -> Tensor:
        """The frequency group of every Fourier position, on the layer's device.

        Computed on the CPU from the shapes alone (docs/spec.md section 4), also for a
        layer on the meta device, which has no data to read.
        """
        device = self.dft_weight.device if hasattr(self, 'dft_weight') else self.weight.device
        rows, cols = self.matrix_size
        groups = frequency_group_index(rows, cols, self.kernel_num, self.frequency_order)
        # A view, for the export's constant: an export traces every torch op, even on
        # this CPU tensor, and cannot read data; numpy it does not trace.
        self._group_array = groups.numpy()
        return groups.to(device)

    def reset_parameters(self) -> None:
        """Initialize as a new layer (docs/spec.md section 7).

        The weight as ``nn.Conv2d`` initializes it, converted to ``dft_weight``; the bias
        as ``nn.Conv2d``'s; the attention heads neutral; the shape-only buffers rebuilt
        (after ``to_empty()`` they hold no data).
        """
        if not getattr(self, 'fdconv_active', False):
            super().reset_parameters()  # also what nn.Conv2d.__init__ calls
            return
        like = self.dft_weight if self.convert_param else self.weight
        weight = torch.empty(
            self.out_channels,
            self.in_channels,
            *self.kernel_size,
            device=like.device,
            dtype=like.dtype,
        )
        # nn.Conv2d.reset_parameters' initialization of weight and bias.
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        with torch.no_grad():
            if self.convert_param:
                self.dft_weight.copy_(kernel_to_spectrum(weight, self.param_ratio))
            else:
                self.weight.copy_(weight)
            if self.bias is not None:
                fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias, -bound, bound)
            self.frequency_groups.copy_(self._frequency_groups())
        self.init_weights()

    def init_weights(self) -> None:
        """Re-apply the neutral init of the attention heads.

        mmengine runs layer-type initializers (e.g. Kaiming on every ``Conv2d``) over the
        whole model before calling this, and they would reach the heads' inner convs.
        The (spectral) weight and bias keep what they hold.
        """
        for name in HEAD_MODULES:
            module = getattr(self, name, None)
            if module is not None:
                module.reset_parameters()

    def _apply(self, fn: Any, recurse: bool = True) -> 'FDConv':
        """As ``nn.Module._apply``, with ``dft_weight`` kept contiguous.

        ``.to(memory_format=torch.channels_last)`` reaches every 4-D parameter; the
        spectrum's trailing (real, imaginary) pair must stay adjacent.
        """
        super()._apply(fn, recurse)
        spectrum = self._parameters.get('dft_weight')
        if spectrum is not None and not spectrum.is_contiguous():
            spectrum.data = spectrum.data.contiguous()
        return self

    def export_group_index(self) -> np.ndarray:
        """The frequency groups as the ONNX graph's constant, computed when an export first
        asks, then kept (:func:`.real_fft.compact_group_index`).
        """
        if self._export_groups is None:
            self._export_groups = compact_group_index(
                self._group_array, self.kernel_num, self.param_ratio
            )
        return self._export_groups

    # ------------------------------------------------------------------ forward pass

    def fourier_weight(self) -> Tensor:
        """The Fourier weight: (P, Cout*kh, Cin*kw // 2 + 1, 2)."""
        if self.convert_param:
            return self.dft_weight
        return kernel_to_spectrum(self.weight, self.param_ratio)

    def dynamic_kernel(self, group_attention: Optional[Tensor]) -> Tensor:
        """FDW kernels of each sample: (B, Cout, Cin, kh, kw), a permuted view.

        Args:
            group_attention (Tensor | None): (B, K*P), or None for a single group.
        """
        with torch.autocast(self.frequency_groups.device.type, enabled=False):
            kernels = reference.fourier_kernels(self, group_attention, reference.TORCH_FFT)
        return matrix_to_kernel(kernels, self.kernel_size)

    def kernel_dominates(self, height: int, width: int) -> bool:
        """Whether the per-sample kernels outweigh the feature maps of an input size.

        Channel and filter attentions then scale the (smaller) input and output instead of
        the kernels: the same function (docs/spec.md section 5), less memory traffic.
        """
        kernel_size = (
            self.out_channels * self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        )
        return kernel_size > (self.in_channels + self.out_channels) * height * width

    def _pads_input(self) -> bool:
        """Whether the input is padded before the conv (padding modes, 'same')."""
        return self.padding_mode != 'zeros' or isinstance(self.padding, str)

    def conv_features(
        self,
        x: Tensor,
        fbm_weight: Optional[Tensor],
        fbm_bias: Optional[Tensor],
        channel_scale: Optional[Tensor],
    ) -> Tensor:
        """What the per-sample kernels convolve: FBM(x), scaled by the channel attention
        where it moved onto the features, in the conv's dtype, padded if the padding is
        not plain zeros (the fields of :class:`.sample_conv.FeatureInputs`).

        Args:
            x (Tensor): (B, Cin, H, W).
            fbm_weight, fbm_bias (Tensor | None): FBM's stacked weight convs, or None
                without FBM.
            channel_scale (Tensor | None): (B, Cin, 1, 1).
        """
        features = x if fbm_weight is None else self.FBM.modulate(x, fbm_weight, fbm_bias)
        if channel_scale is not None:
            features = features * channel_scale.to(features.dtype)
        if torch.is_autocast_enabled(x.device.type):
            features = features.to(torch.get_autocast_dtype(x.device.type))
        if self._pads_input():
            mode = 'constant' if self.padding_mode == 'zeros' else self.padding_mode
            features = F.pad(features, self._reversed_padding_repeated_twice, mode=mode)
        return features

    def forward(self, x: Tensor) -> Tensor:
        """(B, Cin, H, W) -> (B, Cout, H', W'), or unbatched (Cin, H, W) -> (Cout, H', W'),
        H' and W' as ``nn.Conv2d``; a channels-last input gives a channels-last output."""
        if not self.fdconv_active:
            return super().forward(x)
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(
                f'FDConv expects input (B, {self.in_channels}, H, W) or '
                f'({self.in_channels}, H, W), got {tuple(x.shape)}'
            )
        if x.dim() == 3:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.shape[0] == 0:
            return forward_empty(self, x)
        if is_exporting():
            return reference.fdconv(self, x, reference.REAL_DFT)
        if torch.jit.is_tracing():
            return self.forward_as_specified(x)
        out = forward_fast(self, x)
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        if channels_last and not x.is_contiguous():
            return out.contiguous(memory_format=torch.channels_last)
        return out

    def forward_as_specified(self, x: Tensor) -> Tensor:
        """docs/spec.md sections 3-6 as they read: (B, Cin, H, W) -> (B, Cout, H', W').

        :func:`.reference.fdconv` with ``torch.fft``: every attention multiplies the
        ``(B, Cout, Cin, kh, kw)`` kernels, KSM-local's Conv1d and FBM's convs run in their
        modules, FBM transforms whole spectra. The same function as :meth:`forward`, with
        more work and memory: it is what ``torch.jit.trace`` records, so that FLOP
        counters count the definition's operators (``fdconv_mm.analysis``).
        """
        return reference.fdconv(self, x, reference.TORCH_FFT)

    # ------------------------------------------------------------------ state dicts

    def _save_to_state_dict(
        self, destination: Dict[str, Any], prefix: str, keep_vars: bool
    ) -> None:
        """As ``nn.Module``'s, with the layer's ``frequency_order`` in the metadata."""
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.fdconv_active:
            record_frequency_order(destination, prefix, self.frequency_order)

    def _load_from_state_dict(
        self,
        state_dict: Dict[str, Tensor],
        prefix: str,
        local_metadata: Dict[str, Any],
        strict: bool,
        missing_keys: List[str],
        unexpected_keys: List[str],
        error_msgs: List[str],
    ) -> None:
        """Load an FDConv's state dict or a plain conv's (:mod:`.state_dict`); a recorded
        ``frequency_order`` other than the layer's is an error naming both.

        ``load_state_dict`` (torch's and mmengine's) works on its own copy of the dict:
        the caller's dict is left as it was.
        """
        if self.fdconv_active:
            mismatch = frequency_order_mismatch(local_metadata, prefix, self.frequency_order)
            if mismatch is not None:
                error_msgs.append(mismatch)
            convert_plain_conv(self, state_dict, prefix, error_msgs)
        else:
            linear_weight_as_conv(self, state_dict, prefix)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.fdconv_active:
            text += (
                f', kernel_num={self.kernel_num}, param_ratio={self.param_ratio}, '
                f'fbm={self.FBM is not None}'
            )
        return text
