"""What every FDConv backbone adds to its mmdet/mmseg base class.

The base class builds plain convs; :class:`FDConvBackboneMixin` then swaps the chosen ones
for ``build_conv_layer(conv_cfg, ...)`` with the same hyper-parameters, keeps the KSM/FBM
parameters of frozen stages trainable, and logs one line per model when a plain (spatial)
checkpoint is loaded: each active FDConv converts the spatial ``weight`` it is handed
(docs/spec.md section 7), so exactly this model's FDConv layers convert, and a DCN or plain conv at
the same key keeps its weight.
"""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from mmcv.cnn import build_conv_layer
from mmengine.logging import MMLogger
from torch import Tensor, nn

from ...layers import FDConv, FDConvLinear, kernel_to_spectrum


def rebuild_conv(conv: nn.Conv2d, conv_cfg: Mapping[str, Any]) -> nn.Module:
    """A conv built from ``conv_cfg`` with the shape and hyper-parameters of ``conv``."""
    return build_conv_layer(
        dict(conv_cfg),
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )


def rebuild_convs(parent: nn.Module, names: Sequence[str], conv_cfg: Mapping[str, Any]) -> None:
    """Replace the plain ``nn.Conv2d`` children ``names`` of ``parent`` (DCN etc. stay)."""
    for name in names:
        conv = getattr(parent, name, None)
        if type(conv) is nn.Conv2d:
            setattr(parent, name, rebuild_conv(conv, conv_cfg))


def fdconv_linear_like(linear: nn.Linear, conv_cfg: Mapping[str, Any]) -> FDConvLinear:
    """An :class:`FDConvLinear` with the shape of ``linear`` and the options of ``conv_cfg``.

    The token layers (Swin's FFN, ConvNeXt's pointwise linears) have no conv registry
    behind them, so ``conv_cfg`` must name 'FDConv' (or no type).
    """
    options = dict(conv_cfg)
    layer_type = options.pop('type', 'FDConv')
    if layer_type != 'FDConv':
        raise ValueError(
            f"conv_cfg type={layer_type!r}: linear (token) layers support only type='FDConv'"
        )
    return FDConvLinear(
        linear.in_features, linear.out_features, bias=linear.bias is not None, **options
    )


class FrozenStageBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that, frozen (eval mode, no trainable parameter), is the affine map
    ``x * scale + shift`` of its running statistics, and saves no input for the backward pass.

    A frozen stage whose KSM/FBM parameters train (``need_grad_list``) still runs backward
    to reach them; ``F.batch_norm`` would save every BN input for it, although a frozen BN's
    input gradient needs only ``scale``. The same function (up to float rounding); trained,
    or in train mode, it is ``nn.BatchNorm2d``. State dict keys are unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        frozen = not self.training and self.track_running_stats
        if not frozen or any(p.requires_grad for p in self.parameters()):
            return super().forward(x)
        scale = torch.rsqrt(self.running_var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -self.running_mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        shape = (1, -1, 1, 1)
        return torch.addcmul(shift.view(shape).to(x.dtype), x, scale.view(shape).to(x.dtype))


def spatial_fdconv_weights(
    model: nn.Module, state_dict: Mapping[str, Any], prefix: str
) -> List[str]:
    """Keys of ``state_dict`` holding a spatial ``weight`` for an active FDConv of ``model``.

    Those are the weights the layers convert to ``dft_weight`` while loading (keys of
    ``model`` start with ``prefix``); a layer already given its ``dft_weight`` is left out.
    """
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, FDConv) and module.fdconv_active and module.convert_param:
            key = f'{prefix}{name}.weight'
            if key in state_dict and f'{prefix}{name}.dft_weight' not in state_dict:
                keys.append(key)
    return keys


def init_spectrum_as_spatial(conv: FDConv, init: Callable[[Tensor], Any]) -> None:
    """Set ``conv.dft_weight`` to the spectrum of a spatial kernel drawn by ``init``.

    For a backbone's default init: mmengine's initializers reach ``weight``, which an active
    FDConv does not have. ``init`` fills a ``(Cout, Cin, k, k)`` tensor in place, e.g.
    ``partial(nn.init.trunc_normal_, std=0.02)``.
    """
    weight = conv.dft_weight.new_empty(conv.out_channels, conv.in_channels, *conv.kernel_size)
    init(weight)
    with torch.no_grad():
        conv.dft_weight.copy_(kernel_to_spectrum(weight, conv.param_ratio))


def lean_frozen_norms(frozen: nn.Module) -> None:
    """Make the plain ``nn.BatchNorm2d`` modules of ``frozen`` :class:`FrozenStageBatchNorm2d`."""
    for module in frozen.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = FrozenStageBatchNorm2d


class FDConvBackboneMixin:
    """Frozen-stage and checkpoint handling shared by the FDConv backbones.

    A subclass stores ``conv_cfg`` and ``need_grad_list``, builds its FDConv layers and
    calls :meth:`_init_fdconv`.
    """

    conv_cfg: Optional[Dict[str, Any]] = None
    # Empty until set: the base __init__ freezes stages before the FDConv layers exist.
    need_grad_list: Sequence[str] = ()
    _freeze_stages: Callable[[], None]

    def _init_fdconv(self) -> None:
        self._register_load_state_dict_pre_hook(self._log_spatial_weights)
        self._freeze_stages()

    def train(self, mode: bool = True) -> 'FDConvBackboneMixin':
        """The base's ``train`` (which re-freezes stages), returning the module as
        ``nn.Module.train`` does (mmdet's and mmseg's ResNet and Swin return None)."""
        super().train(mode)  # type: ignore[misc]
        return self

    def _freeze(self, frozen: nn.Module) -> None:
        """Eval mode and no gradients for ``frozen``, but for its ``need_grad_list`` parameters."""
        frozen.eval()
        for param in frozen.parameters():
            param.requires_grad = False
        self._keep_attention_trainable(frozen)

    def _keep_attention_trainable(self, frozen: nn.Module) -> None:
        """Re-enable the parameters of ``frozen`` whose name holds a ``need_grad_list`` entry."""
        for name, param in frozen.named_parameters():
            if any(part in name for part in self.need_grad_list):
                param.requires_grad = True

    def _log_spatial_weights(self, state_dict: Dict[str, Any], prefix: str, *args: Any) -> None:
        """Load pre-hook: log how many spatial weights this model's FDConv layers convert."""
        count = len(spatial_fdconv_weights(self, state_dict, prefix))  # type: ignore[arg-type]
        if count:
            MMLogger.get_current_instance().info(
                f'{type(self).__name__}: converted {count} spatial conv weights to FDConv '
                'dft_weight while loading'
            )
