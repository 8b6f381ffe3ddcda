"""The plain counterpart of a model with FDConv: every active FDConv as the layer it replaces.

Used to state what FDConv adds (parameters, FLOPs) to the same network built with
``nn.Conv2d`` (and ``nn.Linear`` for :class:`~fdconv_mm.layers.FDConvLinear`).
"""

from torch import nn

from ..layers import FDConv, FDConvLinear
from ..models.backbones.fdconv_backbone import rebuild_conv
from .fdconv_flops import is_active_fdconv


def plain_layer(layer: FDConv) -> nn.Module:
    """An untrained ``nn.Conv2d`` (``nn.Linear`` for FDConvLinear) of ``layer``'s shape."""
    if isinstance(layer, FDConvLinear):
        return nn.Linear(layer.in_channels, layer.out_channels, bias=layer.bias is not None)
    return rebuild_conv(layer, dict(type='Conv2d'))


def replace_fdconv_with_plain(model: nn.Module) -> int:
    """Swap, in place, every active FDConv of ``model`` for :func:`plain_layer`.

    Returns:
        int: The number of layers replaced.
    """
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if is_active_fdconv(child)
    ]
    for parent, name, child in targets:
        setattr(parent, name, plain_layer(child))
    return len(targets)
