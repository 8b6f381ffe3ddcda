"""Swap the plain convolutions of any PyTorch model for FDConv, keeping their weights.

:func:`convert_to_fdconv` is to FDConv what ``nn.SyncBatchNorm.convert_sync_batchnorm`` is
to BatchNorm: it walks a model and replaces every ``nn.Conv2d`` (and, if asked, every
``nn.Linear`` over tokens) that FDConv's own rule makes active (docs/spec.md section 1)
by an FDConv of the same geometry, loading the old weight through the spectral
conversion of docs/spec.md section 7, so that the converted model starts from the
original one.
"""

import fnmatch
import inspect
import itertools
import logging
from collections import Counter, defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .fdconv import FDConv
from .fdconv_linear import FDConvLinear
from .options import CONV2D_ARGS, OPTION_DEFAULTS, check_known, is_fdconv_active

logger = logging.getLogger(__name__)

Patterns = Union[str, Sequence[str], None]
Places = Dict[int, List[Tuple[nn.Module, str]]]

# Why a layer stays plain, as the summary line words it.
REASONS = {
    'include/exclude': 'outside include/exclude',
    'grouped': 'grouped or depth-wise',
    'channels': 'too few channels (min(Cin, Cout) <= use_fdconv_if_c_gt={c_gt})',
    'kernel size': 'kernel size not in use_fdconv_if_k_in={k_in}',
    'subclass': 'subclasses of nn.Conv2d/nn.Linear (their forward may differ)',
}


def _patterns(name: str, value: Patterns) -> Optional[Tuple[str, ...]]:
    """``include``/``exclude`` as a tuple of patterns (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Sequence) or isinstance(value, bytes):
        raise TypeError(
            f'convert_to_fdconv: {name} must be a module-name pattern (str), a list or tuple '
            f'of them, or None; got {type(value).__name__}'
        )
    patterns = tuple(value)
    wrong = [p for p in patterns if not isinstance(p, str)]
    if wrong:
        raise TypeError(
            f'convert_to_fdconv: {name} patterns must be str; got {wrong[0]!r} '
            f'({type(wrong[0]).__name__})'
        )
    if not patterns or '' in patterns:
        raise ValueError(
            f'convert_to_fdconv: {name}={value!r} holds no pattern or an empty one; give '
            f'module names such as "layer3" or "*.downsample.*"'
            + (', or include=None to convert everywhere' if name == 'include' else '')
        )
    return patterns


def _matches(name: str, pattern: str) -> bool:
    """``pattern`` names the module ``name`` or one of its parents, or matches it (fnmatch)."""
    return name == pattern or name.startswith(pattern + '.') or fnmatch.fnmatchcase(name, pattern)


def _thresholds(options: Dict[str, Any]) -> Tuple[Any, Any]:
    """``use_fdconv_if_c_gt`` and ``use_fdconv_if_k_in``: given, else the layer's defaults."""

    defaults = inspect.signature(is_fdconv_active).parameters
    return tuple(
        options.get(name, defaults[name].default)
        for name in ('use_fdconv_if_c_gt', 'use_fdconv_if_k_in')
    )


def _check_options(options: Dict[str, Any]) -> None:
    """Raise FDConv's own errors for unknown or invalid options, before anything is built.

    A probe layer whose kernel size is outside ``use_fdconv_if_k_in`` stays inactive, so
    that it checks every option that does not depend on a layer's shape. ``fbm_cfg`` does
    (``spatial_group`` must divide ``in_channels``): each replacement checks it.
    """

    geometry = sorted(set(options) & set(CONV2D_ARGS))
    if geometry:
        raise TypeError(
            f'convert_to_fdconv takes {", ".join(geometry)} from each replaced layer; '
            'pass only FDConv options (kernel_num, param_ratio, ...)'
        )
    check_known('FDConv', options, OPTION_DEFAULTS)
    kernel_sizes = _thresholds(options)[1]
    try:
        probe_kernel = next(k for k in itertools.count(1) if k not in tuple(kernel_sizes))
    except TypeError:  # not a sequence: the probe reports it
        probe_kernel = 1
    FDConv(1, 1, probe_kernel, **{k: v for k, v in options.items() if k != 'fbm_cfg'})


def _walk(module: nn.Module) -> Tuple[Dict[int, Tuple[str, nn.Module]], Places]:
    """Name and places (parent, attribute) of ``module`` and every module below it.

    A module shared by several parents is named as ``named_modules`` names it (first
    found) and replaced at each place. FDConv layers are not entered: their heads are
    ``nn.Conv2d`` too.
    """

    found: Dict[int, Tuple[str, nn.Module]] = {id(module): ('', module)}
    places: Places = defaultdict(list)

    def visit(parent: nn.Module, prefix: str) -> None:
        if isinstance(parent, FDConv):
            return
        for attribute, child in parent._modules.items():
            if child is None:
                continue
            places[id(child)].append((parent, attribute))
            if id(child) not in found:
                found[id(child)] = (prefix + attribute, child)
                visit(child, prefix + attribute + '.')

    visit(module, '')
    return found, places


def _plain_reason(layer: nn.Module, c_gt: Any, k_in: Any) -> Optional[str]:
    """Why ``layer`` stays plain by FDConv's rule, or None if FDConv replaces it."""

    if isinstance(layer, nn.Linear):
        in_channels, out_channels, kernel_size = layer.in_features, layer.out_features, 1
    else:
        if layer.groups != 1:
            return 'grouped'
        in_channels, out_channels = layer.in_channels, layer.out_channels
        kernel_size = layer.kernel_size
    thresholds = {'use_fdconv_if_c_gt': c_gt, 'use_fdconv_if_k_in': k_in}
    if is_fdconv_active(in_channels, out_channels, kernel_size, **thresholds):
        return None
    return 'channels' if min(in_channels, out_channels) <= c_gt else 'kernel size'


def _replacement(layer: nn.Module, options: Dict[str, Any]) -> nn.Conv2d:
    """The FDConv of ``layer``'s geometry, options, device, dtype, weights and flags."""

    weight, bias = layer.weight, layer.bias
    factory = dict(device=weight.device, dtype=weight.dtype)
    if isinstance(layer, nn.Linear):
        new = FDConvLinear(
            layer.in_features, layer.out_features, bias=bias is not None, **options, **factory
        )
    else:
        new = FDConv(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=bias is not None,
            padding_mode=layer.padding_mode,
            **options,
            **factory,
        )
    given = {'weight': weight.detach()}
    if bias is not None:
        given['bias'] = bias.detach()
    # A plain conv's state dict: weight becomes dft_weight (docs/spec.md sections 7, 9).
    new.load_state_dict(given)
    _zero_attention_outputs(new)
    for attribute, old in (('dft_weight', weight), ('weight', weight), ('bias', bias)):
        param = getattr(new, attribute, None)
        if isinstance(param, nn.Parameter) and old is not None:
            param.requires_grad_(old.requires_grad)
    return new.train(layer.training)


def _zero_attention_outputs(layer: FDConv) -> None:
    """Every attention exactly neutral: the heads' output weights zero.

    A new layer's N(0, 1e-6) output weights (docs/spec.md section 7) are neutral only
    relative to the KSM hidden activations, which its BatchNorm does not normalize in eval
    mode before training; over the 52 converted layers of a ResNet-50 that drifts the
    logits by about 1e-2 relative. With zeros the converted model is the original to
    float precision, and every head still gets a gradient at the first step.
    """
    heads = [layer.KSM_Global.channel_fc, layer.KSM_Global.filter_fc]
    heads += [layer.KSM_Global.spatial_fc, layer.KSM_Global.kernel_fc]
    if layer.KSM_Local is not None:
        heads.append(layer.KSM_Local.conv)
    if layer.FBM is not None:
        heads.extend(layer.FBM.freq_weight_conv_list)
    with torch.no_grad():
        for head in heads:
            if head is not None:
                head.weight.zero_()


def convert_to_fdconv(
    module: nn.Module,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    convert_linear: bool = False,
    **fdconv_options: Any,
) -> nn.Module:
    """Replace the plain convolutions of ``module`` by FDConv layers holding their weights.

    Chen et al., "Frequency Dynamic Convolution for Dense Image Prediction", CVPR 2025.
    Every ``nn.Conv2d`` (exactly that type: subclasses such as weight-standardized convs
    and existing FDConv layers are left alone) that FDConv's rule makes active
    (:func:`is_fdconv_active` with ``use_fdconv_if_c_gt`` and ``use_fdconv_if_k_in`` from
    ``fdconv_options``, else the layer's defaults) and that has ``groups=1`` becomes an
    :class:`FDConv` with the same in/out channels, kernel size, stride, padding, dilation,
    bias and padding mode, on the same device and dtype. Grouped and depth-wise convs stay
    plain. The old weight is loaded through ``load_state_dict``, which converts it to
    ``dft_weight`` (docs/spec.md section 7); the bias is copied.

    Step 0: the converted model computes the original one (float32 rounding: 2e-5
    relative for a ResNet-50): the heads' output weights start at zero, every attention
    exactly neutral, instead of a new layer's ``N(0, 1e-6)`` (docs/spec.md section 7),
    which is neutral only relative to the KSM hidden activations; in eval mode before
    training, with the KSM BatchNorm's running statistics at their init, those follow the
    features' scale (1e-2 relative at a random ResNet-50's logits). Each head still gets
    a gradient at the first step. With
    ``param_ratio=P > 1`` the spectrum is repeated ``P`` times while each of the ``K*P``
    group attentions starts at ``1/(K*P)``, so a converted layer starts at
    ``P * conv(x) + bias``: the pretrained function is not preserved (a warning says so).

    Each new layer keeps the replaced one's ``training`` flag and the ``requires_grad`` of
    its weight (now ``dft_weight``) and bias; its KSM and FBM heads are new and trainable.
    Frozen stages: code that freezes by setting ``requires_grad=False`` on a whole stage
    at every ``train()`` (mmdet's ResNet ``frozen_stages``) freezes the heads too: convert
    only the unfrozen stages (``include``; mmdet's ``norm_eval=True`` also holds the
    KSM BatchNorm in eval mode), or, freezing your own model, re-enable them::

        for name, param in model.named_parameters():
            if 'KSM' in name or 'FBM' in name:
                param.requires_grad = True

    Nothing is replaced until every replacement is built, so an invalid option (FDConv's
    own ``TypeError`` or ``ValueError``) leaves the model as it was; while they are built
    the old and new layers coexist in memory. Forward hooks on a replaced layer are not
    carried over. One INFO line on the ``fdconv_mm.layers.convert`` logger sums up what
    was converted and why the rest stayed plain; DEBUG lists the names.

    Args:
        module (nn.Module): The model, changed in place; it may itself be a conv.
        include (str | Sequence[str] | None): Convert only modules whose qualified name
            (as in ``named_modules()``) matches one of these patterns: the name itself, a
            parent's name (``'layer3'`` covers ``'layer3.0.conv1'``) or an
            ``fnmatch.fnmatchcase`` pattern (``'layer[34].*'``). Defaults to None
            (everywhere).
        exclude (str | Sequence[str] | None): Skip modules matching these patterns, as
            ``include`` matches them (``'*.downsample.*'``). Defaults to None.
        convert_linear (bool): Also replace ``nn.Linear`` layers by :class:`FDConvLinear`
            (a 1x1 FDConv, active by the rule above with kernel size 1). It takes tokens
            ``(B, L, C)``, with a per-sample attention over the ``L`` tokens: exclude
            linears applied to ``(B, C)`` (classifier heads: ``exclude='fc'``; a 2-D
            input is not a batch of samples to it) or to ``(B, H, W, C)``. FBM is
            refused on tokens, so
            ``use_fbm_if_k_in`` must not hold 1 (``FDConvLinear``'s ``ValueError``).
            Defaults to False.
        **fdconv_options: Options of :class:`FDConv` (``kernel_num``, ``param_ratio``,
            ``use_fdconv_if_c_gt``, ...), the same for every replaced layer. The
            geometry comes from each layer and cannot be given.

    Returns:
        nn.Module: ``module``, or its replacement if ``module`` is itself a converted conv.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from fdconv_mm import convert_to_fdconv
        >>> model = nn.Sequential(
        ...     nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1)
        ... ).eval()
        >>> x = torch.rand(1, 3, 16, 16)
        >>> expected = model(x)
        >>> model = convert_to_fdconv(model, kernel_num=8)
        >>> [type(layer).__name__ for layer in model]
        ['Conv2d', 'ReLU', 'FDConv']
        >>> tuple(model(x).shape), bool(torch.allclose(model(x), expected, atol=1e-5))
        ((1, 64, 16, 16), True)
    """

    if not isinstance(module, nn.Module):
        raise TypeError(f'convert_to_fdconv expects an nn.Module, got {type(module).__name__}')
    include_patterns = _patterns('include', include)
    exclude_patterns = _patterns('exclude', exclude)
    if convert_linear not in (False, True):
        raise ValueError(f'convert_to_fdconv: convert_linear={convert_linear!r} must be a bool')
    _check_options(fdconv_options)
    c_gt, k_in = _thresholds(fdconv_options)
    k_in = tuple(k_in)

    found, places = _walk(module)
    kinds = (nn.Conv2d, nn.Linear) if convert_linear else (nn.Conv2d,)
    used: set = set()
    plain: Dict[str, List[str]] = defaultdict(list)
    plan: Dict[int, Tuple[str, nn.Module]] = {}
    for key, (name, layer) in found.items():
        if not isinstance(layer, kinds) or isinstance(layer, FDConv):
            continue
        matched_include = [p for p in include_patterns or () if _matches(name, p)]
        matched_exclude = [p for p in exclude_patterns or () if _matches(name, p)]
        used.update(matched_include, matched_exclude)
        if type(layer) not in kinds:
            reason: Optional[str] = 'subclass'
        elif (include_patterns is not None and not matched_include) or matched_exclude:
            reason = 'include/exclude'
        else:
            reason = _plain_reason(layer, c_gt, k_in)
        if reason is None:
            plan[key] = (name, layer)
        else:
            plain[reason].append(name or '(the module itself)')
    for option, patterns in (('include', include_patterns), ('exclude', exclude_patterns)):
        unused = [p for p in patterns or () if p not in used]
        if unused:
            logger.warning(
                'convert_to_fdconv: %s pattern(s) %s match no Conv2d%s',
                option,
                ', '.join(map(repr, unused)),
                '/Linear' if convert_linear else '',
            )
    if plan and fdconv_options.get('param_ratio', 1) != 1:
        logger.warning(
            'convert_to_fdconv: param_ratio=%s: the converted layers start at param_ratio '
            'times their conv term (docs/spec.md section 7 repeats the spectrum), not at the '
            'original model',
            fdconv_options['param_ratio'],
        )

    replacements = {key: _replacement(layer, fdconv_options) for key, (_, layer) in plan.items()}
    for key, new in replacements.items():
        for parent, attribute in places[key]:
            setattr(parent, attribute, new)

    converted = Counter(type(layer).__name__ for _, layer in plan.values())
    left = '; '.join(
        f'{len(plain[reason])} {text.format(c_gt=c_gt, k_in=k_in)}'
        for reason, text in REASONS.items()
        if plain[reason]
    )
    logger.info(
        'convert_to_fdconv: converted %d Conv2d%s to FDConv; left plain: %s',
        converted['Conv2d'],
        f' and {converted["Linear"]} Linear' if convert_linear else '',
        left or 'none',
    )
    if plan:
        logger.debug(
            'convert_to_fdconv: converted %s',
            ', '.join(name or '(the module itself)' for name, _ in plan.values()),
        )
    for reason, text in REASONS.items():
        if plain[reason]:
            logger.debug(
                'convert_to_fdconv: left plain, %s: %s',
                text.format(c_gt=c_gt, k_in=k_in),
                ', '.join(plain[reason]),
            )
    return replacements.get(id(module), module)
