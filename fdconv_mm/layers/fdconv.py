"""FDConv: Frequency Dynamic Convolution, a drop-in replacement for ``nn.Conv2d``.

Chen et al., "Frequency Dynamic Convolution for Dense Image Prediction", CVPR 2025.
The weight lives in the Fourier domain, split into ``K`` disjoint frequency groups; a
per-sample attention mixes the groups into a per-sample kernel (FDW), which is modulated
element-wise (KSM), and the input's frequency bands are re-weighted before the
convolution (FBM). Every formula, option and parameter name is fixed by SPEC-fdconv.md.
The attribute names ``dft_weight``, ``KSM_Global``, ``KSM_Local`` and ``FBM`` are the
original's, so that its checkpoints load.

How the forward pass is organised for speed and memory (docs/benchmarks.md): the small
attentions come from autograd as usual; the per-sample kernels (``kernel_synthesis``) and
the FBM-modulated input (``fbm``) are built inside one autograd function
(``sample_conv``) that keeps neither for the backward pass and rebuilds both there, with
hand-written gradients. ``forward_as_specified`` is the specification operator by
operator; ``torch.jit.trace`` records it. Under an ONNX export the layer runs
``onnx_export.fdconv_forward``, the same function in real arithmetic and plain ONNX ops.
"""

import difflib
import inspect
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fbm import FBM_ACTS, FrequencyBandModulation
from .frequency import (
    FREQUENCY_ORDERS,
    frequency_group_index,
    kernel_to_matrix,
    kernel_to_spectrum,
    matrix_to_kernel,
)
from .kernel_synthesis import KernelSynthesis, fourier_kernels
from .ksm import ATTENTION_ACTS, KernelSpatialModulationGlobal, KernelSpatialModulationLocal
from .onnx_export import compact_group_index, fdconv_forward, is_exporting
from .sample_conv import SampleConvGeometry, sample_conv

IntOrPair = Union[int, Tuple[int, int]]

FBM_DEFAULTS: Dict[str, Any] = dict(
    k_list=(2, 4, 8),
    lowfreq_att=False,
    act='sigmoid',
    spatial_kernel=3,
    spatial_group=1,
    init='zero',
)
# Keys of the original configs that select behaviour it never implemented otherwise.
FBM_IGNORED_KEYS = ('fs_feat', 'spatial', 'global_selection', 'max_size')
DEFAULT_KERNEL_NUM = 4


class _Unset:
    """Marks an option the caller did not give (``kernel_num`` has an alias)."""

    def __repr__(self) -> str:
        return 'unset'


UNSET: Any = _Unset()


def _check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(
            f'FDConv option {name}={value!r} is not supported; '
            f'allowed values: {", ".join(map(repr, allowed))}'
        )


def _check_known(owner: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Raise a TypeError naming the unknown options, the closest known ones and all known.

    Args:
        owner (str): What takes the options, e.g. 'FDConv' or 'FDConv fbm_cfg'.
        given (Iterable[str]): The option names given.
        known (Iterable[str]): The option names accepted.
    """
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    close = sorted({m for name in unknown for m in difflib.get_close_matches(name, known, n=1)})
    hint = f' (did you mean {", ".join(map(repr, close))}?)' if close else ''
    raise TypeError(
        f'{owner} got unknown option(s) {", ".join(map(repr, unknown))}{hint}; '
        f'valid options: {", ".join(known)}'
    )


def _check_positive(name: str, value: Any, kind: type = float) -> None:
    valid_type = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, valid_type) or value <= 0:
        raise ValueError(f'FDConv option {name}={value!r} must be a positive ' f'{kind.__name__}')


def _check_int_tuple(name: str, value: Any) -> Tuple[int, ...]:
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(
            f'FDConv option {name}={value!r} must be a list or tuple ' 'of kernel sizes (ints)'
        )
    return tuple(value)


def is_fdconv_active(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    use_fdconv_if_c_gt: int = 16,
    use_fdconv_if_k_in: Sequence[int] = (1, 3),
) -> bool:
    """Whether FDConv replaces a conv of this shape (SPEC section 1); else it is a Conv2d."""
    kernel_h, kernel_w = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return (
        kernel_h == kernel_w
        and min(in_channels, out_channels) > use_fdconv_if_c_gt
        and kernel_h in tuple(use_fdconv_if_k_in)
    )


def _resolve_kernel_num(kernel_num: Any, n_freq_groups: Any) -> Any:
    """``n_freq_groups`` (the paper README's name) is another name of ``kernel_num``."""
    if kernel_num is UNSET and n_freq_groups is UNSET:
        return DEFAULT_KERNEL_NUM
    if kernel_num is UNSET:
        return n_freq_groups
    if n_freq_groups is not UNSET and n_freq_groups != kernel_num:
        raise ValueError(
            f'FDConv got kernel_num={kernel_num!r} and n_freq_groups={n_freq_groups!r}: '
            'they are two names of one option; give one of them'
        )
    return kernel_num


def _resolve_fbm_cfg(fbm_cfg: Optional[Dict[str, Any]], in_channels: int) -> Dict[str, Any]:
    """Validated FBM settings, defaults filled in and no-effect keys dropped."""
    given = dict(fbm_cfg or {})
    _check_known('FDConv fbm_cfg', given, (*FBM_DEFAULTS, *FBM_IGNORED_KEYS))
    cfg = {**FBM_DEFAULTS, **{k: v for k, v in given.items() if k in FBM_DEFAULTS}}
    k_list = cfg['k_list']
    if (
        isinstance(k_list, (str, bytes))
        or not isinstance(k_list, Sequence)
        or not k_list
        or not all(
            isinstance(k, (int, float)) and not isinstance(k, bool) and k > 0 for k in k_list
        )
    ):
        raise ValueError(
            f'FDConv fbm_cfg k_list={k_list!r} must be a non-empty list ' 'of positive numbers'
        )
    _check_choice('fbm_cfg.act', cfg['act'], FBM_ACTS)
    _check_choice('fbm_cfg.init', cfg['init'], ('zero',))
    _check_choice('fbm_cfg.lowfreq_att', cfg['lowfreq_att'], (False, True))
    kernel = cfg['spatial_kernel']
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f'FDConv fbm_cfg spatial_kernel={kernel!r} must be a positive ' 'odd int')
    group = cfg['spatial_group']
    if isinstance(group, bool) or not isinstance(group, int) or group < 1 or in_channels % group:
        raise ValueError(
            f'FDConv fbm_cfg spatial_group={group!r} must be a positive '
            f'int dividing in_channels={in_channels}'
        )
    return dict(cfg, k_list=tuple(k_list))


def _option_names() -> List[str]:
    """The names FDConv's constructor takes."""
    parameters = inspect.signature(FDConv.__init__).parameters.values()
    return [p.name for p in parameters if p.name != 'self' and p.kind != p.VAR_KEYWORD]


class FDConv(nn.Conv2d):
    """Frequency Dynamic Convolution, a drop-in replacement for ``nn.Conv2d``.

    Chen et al., "Frequency Dynamic Convolution for Dense Image Prediction", CVPR 2025.
    FDConv is active only if ``min(Cin, Cout) > use_fdconv_if_c_gt`` and the (square)
    kernel size is in ``use_fdconv_if_k_in``; otherwise the layer is exactly
    ``nn.Conv2d`` (parameters ``weight`` and ``bias``). Active layers need ``groups=1``.
    The Fourier transforms run in float32 (float64 for float64 inputs) whatever the
    input dtype; the kernel is cast to the input's dtype.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype: As ``nn.Conv2d``.
        kernel_num (int | None): ``K``, number of frequency groups; None means
            ``Cout // 2`` with ``kernel_temp = sqrt(K * P)``. Defaults to 4.
        n_freq_groups (int | None): Another name of ``kernel_num`` (the paper's README).
        reduction (float): KSM hidden width ``max(int(Cin * reduction), 16)``.
            Defaults to 0.0625.
        use_fdconv_if_c_gt (int): Active only if ``min(Cin, Cout)`` exceeds it.
            Defaults to 16.
        use_fdconv_if_k_in (Sequence[int]): Active only for these kernel sizes.
            Defaults to (1, 3).
        use_fbm_if_k_in (Sequence[int]): FBM for these kernel sizes. Defaults to (3, ).
        use_fbm_for_stride (bool): FBM also when ``stride > 1``. Defaults to False.
        kernel_temp (float): Temperature of the group attention. Defaults to 1.0.
        temp (float | None): Temperature of the channel, filter and spatial
            attentions; None means ``kernel_temp``. Defaults to None.
        att_multi (float): ``m``, scale of the sigmoid attentions. Defaults to 2.0.
        param_ratio (int): ``P``, independent Fourier weight copies. Defaults to 1.
        param_reduction (float): Only 1.0 is defined. Defaults to 1.0.
        ksm_only_kernel_att (bool): Keep only the group attention. Defaults to False.
        use_ksm_local (bool): Use the local KSM. Defaults to True.
        ksm_local_act (str): 'sigmoid' or 'tanh'. Defaults to 'sigmoid'.
        ksm_global_act (str): 'sigmoid' or 'tanh'. Defaults to 'sigmoid'.
        convert_param (bool): Store ``dft_weight`` (True) or keep ``weight`` and
            transform it at every forward (False). Defaults to True.
        spatial_freq_decompose (bool): Only False is defined. Defaults to False.
        linear_mode (bool): Only False is defined. Defaults to False.
        fbm_cfg (dict | None): FBM settings, see :class:`FrequencyBandModulation`;
            the original's ``fs_feat``, ``spatial``, ``global_selection`` and
            ``max_size`` are accepted with no effect. Defaults to None (``FBM_DEFAULTS``).
        frequency_order (str): How Fourier positions are ranked into groups:
            'original' (float32 radius and torch's default CPU sort, exactly as the
            original code: its checkpoints and the reference vectors), 'stable' (the same
            radius sorted stably: models trained with fdconv-mm 0.1) or 'exact'
            (integer keys, for new models). See :func:`frequency_radius_order`.
            Defaults to 'original'.
        keep_for_backward (bool): Training speed for memory: keep each forward pass's
            per-sample kernels and FBM features for the backward pass (True) instead of
            rebuilding them there (False, the lean default). The same function and
            gradients; one backward pass per forward (no ``retain_graph``). Not an option
            of the original code. Defaults to False.
        att_grid, use_fdconv_if_stride_in: Accepted with no effect, as in the original.
        **unknown_options: Refused with a TypeError that lists the valid options.

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
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        *,
        kernel_num: Optional[int] = UNSET,
        n_freq_groups: Optional[int] = UNSET,
        reduction: float = 0.0625,
        use_fdconv_if_c_gt: int = 16,
        use_fdconv_if_k_in: Sequence[int] = (1, 3),
        use_fbm_if_k_in: Sequence[int] = (3,),
        use_fbm_for_stride: bool = False,
        kernel_temp: float = 1.0,
        temp: Optional[float] = None,
        att_multi: float = 2.0,
        param_ratio: int = 1,
        param_reduction: float = 1.0,
        ksm_only_kernel_att: bool = False,
        use_ksm_local: bool = True,
        ksm_local_act: str = 'sigmoid',
        ksm_global_act: str = 'sigmoid',
        convert_param: bool = True,
        spatial_freq_decompose: bool = False,
        linear_mode: bool = False,
        fbm_cfg: Optional[Dict[str, Any]] = None,
        frequency_order: str = 'original',
        keep_for_backward: bool = False,
        att_grid: Any = None,
        use_fdconv_if_stride_in: Any = None,
        **unknown_options: Any,
    ) -> None:
        _check_known(type(self).__name__, unknown_options, _option_names())
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
        )
        kernel_num = _resolve_kernel_num(kernel_num, n_freq_groups)
        if kernel_num is not None:
            _check_positive('kernel_num', kernel_num, int)
        _check_positive('reduction', reduction)
        _check_positive('kernel_temp', kernel_temp)
        if temp is not None:
            _check_positive('temp', temp)
        _check_positive('param_ratio', param_ratio, int)
        if isinstance(use_fdconv_if_c_gt, bool) or not isinstance(use_fdconv_if_c_gt, int):
            raise ValueError(
                f'FDConv option use_fdconv_if_c_gt={use_fdconv_if_c_gt!r} ' 'must be an int'
            )
        if not isinstance(att_multi, (int, float)) or isinstance(att_multi, bool):
            raise ValueError(f'FDConv option att_multi={att_multi!r} must be a number')
        _check_choice('param_reduction', param_reduction, (1.0,))
        _check_choice('spatial_freq_decompose', spatial_freq_decompose, (False,))
        _check_choice('linear_mode', linear_mode, (False,))
        _check_choice('frequency_order', frequency_order, FREQUENCY_ORDERS)
        _check_choice('ksm_local_act', ksm_local_act, ATTENTION_ACTS)
        _check_choice('ksm_global_act', ksm_global_act, ATTENTION_ACTS)
        for name, flag in (
            ('use_fbm_for_stride', use_fbm_for_stride),
            ('ksm_only_kernel_att', ksm_only_kernel_att),
            ('use_ksm_local', use_ksm_local),
            ('convert_param', convert_param),
            ('keep_for_backward', keep_for_backward),
        ):
            _check_choice(name, flag, (False, True))
        fdconv_kernel_sizes = _check_int_tuple('use_fdconv_if_k_in', use_fdconv_if_k_in)
        fbm_kernel_sizes = _check_int_tuple('use_fbm_if_k_in', use_fbm_if_k_in)
        fbm_cfg = _resolve_fbm_cfg(fbm_cfg, in_channels)

        kernel_h = self.kernel_size[0]
        self.fdconv_active = is_fdconv_active(
            in_channels, out_channels, self.kernel_size, use_fdconv_if_c_gt, fdconv_kernel_sizes
        )
        if not self.fdconv_active:
            return
        if groups != 1:
            raise ValueError(
                f'FDConv supports groups=1 only, got groups={groups} for an active layer '
                f'(in_channels={in_channels}, out_channels={out_channels}, kernel_size='
                f'{kernel_h}); use a plain conv there, or raise use_fdconv_if_c_gt / '
                'narrow use_fdconv_if_k_in so that FDConv stays inactive for it'
            )
        if kernel_num is None:
            kernel_num = out_channels // 2
            kernel_temp = math.sqrt(kernel_num * param_ratio)
        self.kernel_num = kernel_num
        self.param_ratio = param_ratio
        self.frequency_order = frequency_order
        self.convert_param = convert_param
        self.keep_for_backward = keep_for_backward
        self.use_fbm = kernel_h in fbm_kernel_sizes or (use_fbm_for_stride and max(self.stride) > 1)
        self.alpha = min(in_channels, out_channels) // 2 * kernel_num * param_ratio

        self.KSM_Global = KernelSpatialModulationGlobal(
            in_channels,
            out_channels,
            kernel_h,
            kernel_num * param_ratio,
            reduction=reduction,
            temperature=kernel_temp if temp is None else temp,
            kernel_temperature=kernel_temp,
            att_multi=att_multi,
            act=ksm_global_act,
            only_kernel_attention=ksm_only_kernel_att,
        )
        self.FBM = (
            FrequencyBandModulation(
                in_channels,
                k_list=fbm_cfg['k_list'],
                lowfreq_att=fbm_cfg['lowfreq_att'],
                act=fbm_cfg['act'],
                spatial_kernel=fbm_cfg['spatial_kernel'],
                spatial_group=fbm_cfg['spatial_group'],
            )
            if self.use_fbm
            else None
        )
        self.KSM_Local = (
            KernelSpatialModulationLocal(
                in_channels, out_channels, kernel_h, att_multi=att_multi, act=ksm_local_act
            )
            if use_ksm_local
            else None
        )
        self.register_buffer(
            'frequency_groups',
            # Computed on the CPU (SPEC section 4), kept with the parameters.
            frequency_group_index(
                out_channels * kernel_h, in_channels * kernel_h, kernel_num, frequency_order
            ).to(self.weight.device),
            persistent=False,
        )
        # The groups as the ONNX export path's constant (read here: an export cannot).
        self.export_group_index = compact_group_index(
            self.frequency_groups, kernel_num, param_ratio
        )
        # Static helpers of the forward pass (plain attributes: nothing in the state dict).
        self.synthesis = KernelSynthesis(
            out_channels,
            in_channels,
            kernel_h,
            kernel_num,
            param_ratio,
            self.alpha,
            local_act=ksm_local_act,
            att_multi=att_multi,
        )
        padding = (0, 0) if self._pads_input() else self.padding
        self.conv_geometry = SampleConvGeometry(kernel_h, self.stride, padding, self.dilation)
        if convert_param:
            weight = self.weight.detach()
            del self.weight
            self.dft_weight = nn.Parameter(kernel_to_spectrum(weight, param_ratio).to(weight.dtype))

    def init_weights(self) -> None:
        """Re-apply the neutral init of the attention heads.

        mmengine runs layer-type initializers (e.g. Kaiming on every ``Conv2d``) over the
        whole model before calling this, and they would reach the heads' inner convs.
        The (spectral) weight and bias keep what they hold.
        """
        for module in (
            getattr(self, 'KSM_Global', None),
            getattr(self, 'KSM_Local', None),
            getattr(self, 'FBM', None),
        ):
            if module is not None:
                module.reset_parameters()

    def fourier_weight(self) -> Tensor:
        """The Fourier weight: (P, Cout*k, Cin*k // 2 + 1, 2)."""
        if self.convert_param:
            return self.dft_weight
        return kernel_to_spectrum(self.weight, self.param_ratio)

    def fourier_kernels(self, spectrum: Tensor, group_attention: Optional[Tensor]) -> Tensor:
        """FDW: mix the frequency groups of each sample into its kernel matrix.

        Args:
            spectrum (Tensor): (P, Cout*k, Cin*k // 2 + 1, 2), see :meth:`fourier_weight`.
            group_attention (Tensor | None): (B, K*P), or None for a single group.

        Returns:
            Tensor: (B, Cout*k, Cin*k), laid out ``(co, i, ci, j)``, in float32 (float64
            for a float64 weight); B is 1 when ``group_attention`` is None.
        """
        with torch.autocast(spectrum.device.type, enabled=False):
            return fourier_kernels(
                spectrum,
                group_attention,
                self.frequency_groups,
                self.kernel_num,
                self.param_ratio,
                self.alpha,
                self.synthesis.matrix_size,
            )[0]

    def dynamic_kernel(self, group_attention: Optional[Tensor]) -> Tensor:
        """FDW kernels of each sample: (B, Cout, Cin, k, k), a permuted view.

        Args:
            group_attention (Tensor | None): (B, K*P), or None for a single group.
        """
        kernels = self.fourier_kernels(self.fourier_weight(), group_attention)
        return matrix_to_kernel(kernels, self.kernel_size[0])

    def kernel_dominates(self, height: int, width: int) -> bool:
        """Whether the per-sample kernels outweigh the feature maps of an input size.

        Channel and filter attentions then scale the (smaller) input and output instead of
        the kernels: the same function (SPEC section 5), less memory traffic.
        """
        kernel_size = self.out_channels * self.in_channels * self.kernel_size[0] ** 2
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
        not plain zeros.

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
        """(B, Cin, H, W) -> (B, Cout, H', W'), H' and W' as ``nn.Conv2d``."""
        if not self.fdconv_active:
            return super().forward(x)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'FDConv expects input (B, {self.in_channels}, H, W), got ' f'{tuple(x.shape)}'
            )
        if x.shape[0] == 0:
            return self._forward_empty(x)
        if is_exporting():
            return fdconv_forward(self, x)
        if torch.jit.is_tracing():
            return self.forward_as_specified(x)
        batch, _, height, width = x.shape
        k, cout, cin = self.kernel_size[0], self.out_channels, self.in_channels
        pooled = x.mean(dim=(2, 3), keepdim=True)
        channel_att, filter_att, spatial_att, group_att = self.KSM_Global(pooled)
        on_features = self.kernel_dominates(height, width)
        row_scale = None if spatial_att is None else spatial_att.view(batch, 1, k, 1, k)
        column_scale = None
        if not on_features:
            if filter_att is not None:
                filters = filter_att.view(batch, cout, 1, 1, 1)
                row_scale = filters if row_scale is None else row_scale * filters
            if channel_att is not None:
                column_scale = channel_att.view(batch, 1, 1, cin, 1)

        fbm_weight, fbm_bias = self.FBM.stacked_conv() if self.FBM is not None else (None, None)
        feature_scale = None
        if on_features and channel_att is not None:
            feature_scale = channel_att.view(batch, cin, 1, 1)
        local = self.KSM_Local
        kernel_inputs = (
            self.frequency_groups,
            self.fourier_weight(),
            group_att,
            None if local is None else local.normalize(pooled),
            None if local is None else local.conv.weight,
            row_scale,
            column_scale,
        )
        scale_output = on_features and filter_att is not None
        bias = None if scale_output else self.bias
        out = sample_conv(
            self.conv_features,
            self.synthesis,
            self.conv_geometry,
            x,
            bias,
            (fbm_weight, fbm_bias, feature_scale),
            kernel_inputs,
            self.keep_for_backward,
        )
        if scale_output:
            filters = filter_att.view(batch, cout, 1, 1).to(out.dtype)
            if self.bias is None:
                return out * filters
            return torch.addcmul(self.bias.view(1, -1, 1, 1).to(out.dtype), out, filters)
        return out

    def _forward_empty(self, x: Tensor) -> Tensor:
        """A batch of no samples (e.g. no RoI): (0, Cin, H, W) -> (0, Cout, H', W').

        As ``nn.Conv2d``: an empty output whose backward pass gives every parameter a zero
        gradient (DDP expects one for each). The global KSM still runs, so that a
        ``SyncBatchNorm`` in it still joins the other processes' collectives.
        """
        features = self.conv_features(x, None, None, None)
        geometry = self.conv_geometry
        out = F.conv2d(
            features,
            features.new_zeros(self.out_channels, self.in_channels, *self.kernel_size),
            None if self.bias is None else self.bias.to(features.dtype),
            geometry.stride,
            geometry.padding,
            geometry.dilation,
        )
        attentions = self.KSM_Global(x.mean(dim=(2, 3), keepdim=True))
        anchors = [p.view(-1)[0] for p in self.parameters()]
        anchors += [a.sum() for a in attentions if a is not None]
        return out + sum(anchors).to(out.dtype) * 0

    def forward_as_specified(self, x: Tensor) -> Tensor:
        """SPEC sections 3-6 operator by operator: (B, Cin, H, W) -> (B, Cout, H', W').

        Every attention multiplies the ``(B, Cout, Cin, k, k)`` kernels, KSM-local's Conv1d
        and FBM's convs run in their modules, FBM transforms whole spectra. The same
        function as :meth:`forward`, with more work and memory: it is what
        ``torch.jit.trace`` records, so that FLOP counters count the specification's
        operators (``fdconv_mm.analysis``).
        """
        batch, k = x.shape[0], self.kernel_size[0]
        pooled = x.mean(dim=(2, 3), keepdim=True)
        channel_att, filter_att, spatial_att, group_att = self.KSM_Global(pooled)
        kernel = self.dynamic_kernel(group_att)
        if self.KSM_Local is not None:
            kernel = kernel * self.KSM_Local(pooled, spatial_att)
        elif spatial_att is not None:
            kernel = kernel * spatial_att.view(batch, 1, 1, k, k)
        if channel_att is not None:
            kernel = kernel * channel_att.view(batch, 1, self.in_channels, 1, 1)
        if filter_att is not None:
            kernel = kernel * filter_att.view(batch, self.out_channels, 1, 1, 1)
        features = self.FBM(x) if self.FBM is not None else x
        features = self.conv_features(features, None, None, None)
        kernels = kernel_to_matrix(kernel.expand(batch, -1, -1, -1, -1))
        return self.conv_geometry.run(features, kernels, self.bias)

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
        """Convert a spatial ``weight`` to ``dft_weight`` on load (SPEC section 7).

        A 1x1 layer also takes an ``nn.Linear`` weight ``(Cout, Cin)``. A ``weight`` of
        another shape is a size mismatch, reported as ``nn.Conv2d`` reports one (so that
        ``load_state_dict`` raises, strict or not).

        ``nn.Module.load_state_dict`` works on its own copy of the dict, so the caller's
        dict is left as it was.
        """
        weight_key, spectrum_key = prefix + 'weight', prefix + 'dft_weight'
        given = weight = state_dict.get(weight_key)
        if given is not None and given.dim() == 2 and self.kernel_size == (1, 1):
            weight = given[:, :, None, None]  # an nn.Linear weight, as a 1x1 conv
            state_dict[weight_key] = weight
        if (
            self.fdconv_active
            and self.convert_param
            and weight is not None
            and spectrum_key not in state_dict
        ):
            del state_dict[weight_key]
            expected = (self.out_channels, self.in_channels, *self.kernel_size)
            if tuple(weight.shape) == expected:
                state_dict[spectrum_key] = kernel_to_spectrum(weight, self.param_ratio)
            else:
                error_msgs.append(
                    f'size mismatch for {weight_key}: copying a param with shape '
                    f'{given.shape} from checkpoint, the shape in current model is '
                    f'{torch.Size(expected)}.'
                )
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


class FDConvLinear(FDConv):
    """``nn.Linear`` replacement: a 1x1 FDConv over the tokens of each sample.

    The tokens ``(B, L, Cin)`` are laid out as a ``(B, Cin, L, 1)`` map: a 1x1 conv and the
    KSM's per-sample mean over the tokens do not depend on their spatial layout, so this
    equals FDConv on the ``(B, Cin, H, W)`` token map. FBM, which needs that 2-D layout, is
    refused. Loading an ``nn.Linear`` state dict converts its weight.

    Args:
        in_features (int): ``Cin``.
        out_features (int): ``Cout``.
        bias (bool): As ``nn.Linear``. Defaults to True.
        **options: FDConv options (see :class:`FDConv`).

    Example:
        >>> import torch
        >>> linear = FDConvLinear(96, 384, kernel_num=64)
        >>> tuple(linear(torch.rand(2, 49, 96)).shape)
        (2, 49, 384)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **options: Any):
        super().__init__(in_features, out_features, 1, bias=bias, **options)
        if self.fdconv_active and self.FBM is not None:
            raise ValueError(
                'FDConvLinear runs on token sequences and cannot use FBM: remove 1 from '
                f'use_fbm_if_k_in (got {options.get("use_fbm_if_k_in")!r})'
            )

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, L, Cin) -> (B, L, Cout)."""
        token_map = tokens.transpose(1, 2).unsqueeze(-1)
        return super().forward(token_map).squeeze(-1).transpose(1, 2)
