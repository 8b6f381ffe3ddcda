"""FDConv's options: their defaults, their validation and what they resolve to.

Every option is checked once, when a layer is built, with a message that names the option
and the values it takes; the layer reads the resolved :class:`FDConvOptions`. The options
(docs/spec.md section 1; the names are the original configs'):

* ``kernel_num`` (int | None, 4): ``K``, the number of frequency groups; None means
  ``Cout // 2`` with ``kernel_temp = sqrt(K * P)``. ``n_freq_groups`` (the paper README's
  name) is another name of it.
* ``reduction`` (float, 0.0625): KSM hidden width ``max(int(Cin * reduction), 16)``.
* ``use_fdconv_if_c_gt`` (int, 16), ``use_fdconv_if_k_in`` (Sequence[int], (1, 3)):
  FDConv is active only if ``min(Cin, Cout)`` exceeds the first and both kernel sides are
  among the second; otherwise the layer is a plain ``nn.Conv2d``.
* ``use_fbm_if_k_in`` (Sequence[int], (3,)), ``use_fbm_for_stride`` (bool, False): FBM if
  the larger kernel side is among these sizes, or for a stride above 1 if asked.
* ``kernel_temp`` (float, 1.0), ``temp`` (float | None, None): temperatures of the group
  attention and of the channel, filter and spatial attentions (None: ``kernel_temp``).
* ``att_multi`` (float, 2.0): ``m``, the scale of the sigmoid attentions.
* ``param_ratio`` (int, 1): ``P``, independent copies of the Fourier weight.
* ``param_reduction`` (1.0), ``spatial_freq_decompose`` (False), ``linear_mode`` (False):
  only these values are defined.
* ``ksm_only_kernel_att`` (bool, False): keep only the group attention.
* ``use_ksm_local`` (bool, True); ``ksm_local_act``, ``ksm_global_act`` ('sigmoid' or
  'tanh', 'sigmoid').
* ``convert_param`` (bool, True): store ``dft_weight``, or keep ``weight`` and transform
  it at every forward pass.
* ``fbm_cfg`` (dict | None, None: :data:`FBM_DEFAULTS`): FBM settings; the original's
  ``fs_feat``, ``spatial``, ``global_selection`` and ``max_size`` are accepted with no
  effect.
* ``frequency_order`` ('original', 'stable' or 'exact'; 'original'): how Fourier
  positions are ranked into groups (:func:`.frequency.frequency_radius_order`).
* ``keep_for_backward`` (bool, False): keep each forward pass's per-sample kernels and
  FBM features for the backward pass instead of rebuilding them (speed for memory; not
  an option of the original code).
* ``att_grid``, ``use_fdconv_if_stride_in``: accepted with no effect, as in the original.
"""

import difflib
import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

from .fbm import FBM_ACTS
from .frequency import FREQUENCY_ORDERS
from .helpers import IntOrPair, to_pair
from .ksm import ATTENTION_ACTS

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
BOOLEAN_OPTIONS = (
    'use_fbm_for_stride',
    'ksm_only_kernel_att',
    'use_ksm_local',
    'convert_param',
    'keep_for_backward',
)


class _Unset:
    """Marks an option the caller did not give (``kernel_num`` has an alias)."""

    def __repr__(self) -> str:
        return 'unset'


UNSET: Any = _Unset()

# nn.Conv2d's own arguments: named in the message on an unknown option (a typo of one).
CONV2D_ARGS = (
    'in_channels',
    'out_channels',
    'kernel_size',
    'stride',
    'padding',
    'dilation',
    'groups',
    'bias',
    'padding_mode',
    'device',
    'dtype',
)
# Every option FDConv takes, with its default (the module docstring says what each does).
OPTION_DEFAULTS: Dict[str, Any] = dict(
    kernel_num=UNSET,
    n_freq_groups=UNSET,
    reduction=0.0625,
    use_fdconv_if_c_gt=16,
    use_fdconv_if_k_in=(1, 3),
    use_fbm_if_k_in=(3,),
    use_fbm_for_stride=False,
    kernel_temp=1.0,
    temp=None,
    att_multi=2.0,
    param_ratio=1,
    param_reduction=1.0,
    ksm_only_kernel_att=False,
    use_ksm_local=True,
    ksm_local_act='sigmoid',
    ksm_global_act='sigmoid',
    convert_param=True,
    spatial_freq_decompose=False,
    linear_mode=False,
    fbm_cfg=None,
    frequency_order='original',
    keep_for_backward=False,
    att_grid=None,
    use_fdconv_if_stride_in=None,
)


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise a ValueError naming the option and its allowed values."""
    if value not in allowed:
        raise ValueError(
            f'FDConv option {name}={value!r} is not supported; '
            f'allowed values: {", ".join(map(repr, allowed))}'
        )


def check_known(owner: str, given: Iterable[str], known: Iterable[str]) -> None:
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_positive(name: str, value: Any, kind: type = float) -> None:
    """Raise a ValueError unless ``value`` is a positive finite number (an int if asked)."""
    valid = isinstance(value, int) if kind is int else _is_number(value)
    if isinstance(value, bool) or not valid or not math.isfinite(value) or value <= 0:
        raise ValueError(f'FDConv option {name}={value!r} must be a positive {kind.__name__}')


def _check_int_tuple(name: str, value: Any) -> Tuple[int, ...]:
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(
            f'FDConv option {name}={value!r} must be a list or tuple of kernel sizes (ints)'
        )
    return tuple(value)


def is_fdconv_active(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    use_fdconv_if_c_gt: int = 16,
    use_fdconv_if_k_in: Sequence[int] = (1, 3),
) -> bool:
    """Whether FDConv replaces a conv of this shape (docs/spec.md section 1): more than
    ``use_fdconv_if_c_gt`` channels on both sides and both kernel sides in
    ``use_fdconv_if_k_in``; otherwise the layer is a plain ``nn.Conv2d``."""
    kernel_h, kernel_w = to_pair(kernel_size)
    sizes = tuple(use_fdconv_if_k_in)
    return (
        min(in_channels, out_channels) > use_fdconv_if_c_gt
        and kernel_h in sizes
        and kernel_w in sizes
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


def resolve_fbm_cfg(fbm_cfg: Any, in_channels: int) -> Dict[str, Any]:
    """Validated FBM settings, defaults filled in and no-effect keys dropped."""
    if fbm_cfg is not None and not isinstance(fbm_cfg, dict):
        raise ValueError(
            f'FDConv option fbm_cfg={fbm_cfg!r} must be a dict of FBM settings (or None), '
            f'with keys among {", ".join(FBM_DEFAULTS)}; e.g. fbm_cfg=dict(k_list=(2, 4))'
        )
    given = dict(fbm_cfg or {})
    check_known('FDConv fbm_cfg', given, (*FBM_DEFAULTS, *FBM_IGNORED_KEYS))
    cfg = {**FBM_DEFAULTS, **{k: v for k, v in given.items() if k in FBM_DEFAULTS}}
    k_list = cfg['k_list']
    if (
        isinstance(k_list, (str, bytes))
        or not isinstance(k_list, Sequence)
        or not k_list
        or not all(_is_number(k) and math.isfinite(k) and k > 0 for k in k_list)
    ):
        raise ValueError(
            f'FDConv fbm_cfg k_list={k_list!r} must be a non-empty list of positive numbers'
        )
    check_choice('fbm_cfg.act', cfg['act'], FBM_ACTS)
    check_choice('fbm_cfg.init', cfg['init'], ('zero',))
    check_choice('fbm_cfg.lowfreq_att', cfg['lowfreq_att'], (False, True))
    kernel = cfg['spatial_kernel']
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f'FDConv fbm_cfg spatial_kernel={kernel!r} must be a positive odd int')
    group = cfg['spatial_group']
    if isinstance(group, bool) or not isinstance(group, int) or group < 1 or in_channels % group:
        raise ValueError(
            f'FDConv fbm_cfg spatial_group={group!r} must be a positive '
            f'int dividing in_channels={in_channels}'
        )
    return dict(cfg, k_list=tuple(k_list))


@dataclass(frozen=True)
class FDConvOptions:
    """The options of an active FDConv, validated and resolved (docs/spec.md section 1).

    ``kernel_num=None`` is resolved to ``Cout // 2`` with ``kernel_temp = sqrt(K * P)``,
    ``temp=None`` to ``kernel_temp``, ``fbm_cfg`` to the full settings and
    ``use_fbm_if_k_in`` with ``use_fbm_for_stride`` to ``use_fbm``.
    """

    kernel_num: int
    reduction: float
    kernel_temp: float
    temp: float
    att_multi: float
    param_ratio: int
    ksm_only_kernel_att: bool
    use_ksm_local: bool
    ksm_local_act: str
    ksm_global_act: str
    convert_param: bool
    fbm_cfg: Dict[str, Any]
    use_fbm: bool
    frequency_order: str
    keep_for_backward: bool


def validate_options(
    in_channels: int,
    out_channels: int,
    kernel_size: Tuple[int, int],
    stride: Tuple[int, int],
    groups: int,
    given: Dict[str, Any],
    owner: str = 'FDConv',
) -> Optional[FDConvOptions]:
    """Check every option (each layer, active or not) and resolve them.

    Args:
        in_channels, out_channels, groups (int): The layer's.
        kernel_size, stride (tuple[int, int]): The layer's.
        given (dict): The options given, by name (module docstring); the others take
            their defaults (:data:`OPTION_DEFAULTS`).
        owner (str): The layer's class name, for the message on unknown options.

    Returns:
        FDConvOptions | None: The resolved options, or None where FDConv is not active
        for this shape (the layer is then a plain ``nn.Conv2d``).
    """
    check_known(owner, given, (*CONV2D_ARGS, *OPTION_DEFAULTS))
    options = {**OPTION_DEFAULTS, **given}
    kernel_num = _resolve_kernel_num(options['kernel_num'], options['n_freq_groups'])
    reduction, kernel_temp, temp = options['reduction'], options['kernel_temp'], options['temp']
    att_multi, param_ratio = options['att_multi'], options['param_ratio']
    use_fdconv_if_c_gt = options['use_fdconv_if_c_gt']
    if kernel_num is not None:
        check_positive('kernel_num', kernel_num, int)
    check_positive('reduction', reduction)
    check_positive('kernel_temp', kernel_temp)
    if temp is not None:
        check_positive('temp', temp)
    check_positive('att_multi', att_multi)
    check_positive('param_ratio', param_ratio, int)
    if isinstance(use_fdconv_if_c_gt, bool) or not isinstance(use_fdconv_if_c_gt, int):
        raise ValueError(f'FDConv option use_fdconv_if_c_gt={use_fdconv_if_c_gt!r} must be an int')
    check_choice('param_reduction', options['param_reduction'], (1.0,))
    check_choice('spatial_freq_decompose', options['spatial_freq_decompose'], (False,))
    check_choice('linear_mode', options['linear_mode'], (False,))
    check_choice('frequency_order', options['frequency_order'], FREQUENCY_ORDERS)
    check_choice('ksm_local_act', options['ksm_local_act'], ATTENTION_ACTS)
    check_choice('ksm_global_act', options['ksm_global_act'], ATTENTION_ACTS)
    for name in BOOLEAN_OPTIONS:
        check_choice(name, options[name], (False, True))
    fdconv_kernel_sizes = _check_int_tuple('use_fdconv_if_k_in', options['use_fdconv_if_k_in'])
    fbm_kernel_sizes = _check_int_tuple('use_fbm_if_k_in', options['use_fbm_if_k_in'])
    fbm_cfg = resolve_fbm_cfg(options['fbm_cfg'], in_channels)
    active = is_fdconv_active(
        in_channels, out_channels, kernel_size, use_fdconv_if_c_gt, fdconv_kernel_sizes
    )
    if not active:
        return None
    if groups != 1:
        raise ValueError(
            f'FDConv supports groups=1 only, got groups={groups} for an active layer '
            f'(in_channels={in_channels}, out_channels={out_channels}, kernel_size='
            f'{kernel_size}); use a plain conv there, or raise use_fdconv_if_c_gt / '
            'narrow use_fdconv_if_k_in so that FDConv stays inactive for it'
        )
    if kernel_num is None:
        kernel_num = out_channels // 2
        kernel_temp = math.sqrt(kernel_num * param_ratio)
    use_fbm = max(kernel_size) in fbm_kernel_sizes or (
        options['use_fbm_for_stride'] and max(stride) > 1
    )
    return FDConvOptions(
        kernel_num=kernel_num,
        reduction=reduction,
        kernel_temp=kernel_temp,
        temp=kernel_temp if temp is None else temp,
        att_multi=att_multi,
        param_ratio=param_ratio,
        ksm_only_kernel_att=options['ksm_only_kernel_att'],
        use_ksm_local=options['use_ksm_local'],
        ksm_local_act=options['ksm_local_act'],
        ksm_global_act=options['ksm_global_act'],
        convert_param=options['convert_param'],
        fbm_cfg=fbm_cfg,
        use_fbm=use_fbm,
        frequency_order=options['frequency_order'],
        keep_for_backward=options['keep_for_backward'],
    )
