"""How FDConv reads and writes state dicts (docs/spec.md sections 7 and 9).

A plain conv's state dict loads into an active layer (its ``weight`` converted to
``dft_weight``, the attention heads left as they are), and every layer records its
``frequency_order`` in the state dict's metadata, so that a checkpoint is never loaded
into a layer that ranks its frequencies otherwise.
"""

from typing import Any, Dict, List, Optional

import torch
from torch import Tensor, nn

from .frequency import kernel_to_spectrum

ORDER_KEY = 'frequency_order'


def record_frequency_order(destination: Dict[str, Any], prefix: str, order: str) -> None:
    """Write a layer's order into the metadata of a state dict being saved (no key)."""
    metadata = getattr(destination, '_metadata', None)
    if metadata is not None:
        metadata.setdefault(prefix[:-1], {})[ORDER_KEY] = order


def frequency_order_mismatch(metadata: Dict[str, Any], prefix: str, order: str) -> Optional[str]:
    """The error of loading a state dict saved with another order, naming both; None if the
    orders agree or the state dict has no record (the original code's, fdconv-mm 0.1's)."""
    recorded = metadata.get(ORDER_KEY)
    if recorded is None or recorded == order:
        return None
    return (
        f'frequency_order mismatch for {prefix[:-1] or "the layer"}: the checkpoint was saved '
        f'from a layer with frequency_order={recorded!r}, this layer has '
        f'frequency_order={order!r} (its outputs would differ); build the model with '
        f'frequency_order={recorded!r}'
    )


def linear_weight_as_conv(
    conv: nn.Module, state_dict: Dict[str, Tensor], prefix: str
) -> Optional[Tensor]:
    """An ``nn.Linear`` weight ``(Cout, Cin)`` for a 1x1 layer (active or not) becomes the
    conv weight ``(Cout, Cin, 1, 1)`` in ``state_dict``; returns the (new) weight or None."""
    weight = state_dict.get(prefix + 'weight')
    if weight is not None and weight.dim() == 2 and conv.kernel_size == (1, 1):
        weight = state_dict[prefix + 'weight'] = weight[:, :, None, None]
    return weight


def convert_plain_conv(
    conv: nn.Module, state_dict: Dict[str, Tensor], prefix: str, error_msgs: List[str]
) -> None:
    """Bring a plain conv's entries of ``state_dict`` to the active layer ``conv``'s, in place.

    A spatial ``weight`` (an ``nn.Linear`` weight ``(Cout, Cin)`` for a 1x1 layer) becomes
    ``dft_weight`` (docs/spec.md section 7) where the layer has one; a state dict with no
    attention-head entries takes the heads' current ones, so that strict loading accepts a
    plain conv's dict. A ``weight`` of another shape is a size mismatch, reported as
    ``nn.Conv2d`` reports one.

    Args:
        conv (FDConv): An active layer.
        state_dict (dict): The dict being loaded (``load_state_dict``'s own copy).
        prefix (str): The layer's key prefix.
        error_msgs (list[str]): ``load_state_dict``'s error list.
    """
    weight_key, spectrum_key = prefix + 'weight', prefix + 'dft_weight'
    given = state_dict.get(weight_key)
    if given is None or spectrum_key in state_dict:
        return
    weight = linear_weight_as_conv(conv, state_dict, prefix)
    heads = {key: value for key, value in conv.state_dict().items() if '.' in key}
    if not any(prefix + key in state_dict for key in heads):
        state_dict.update({prefix + key: value for key, value in heads.items()})
    if not conv.convert_param:
        return
    del state_dict[weight_key]
    expected = (conv.out_channels, conv.in_channels, *conv.kernel_size)
    if tuple(weight.shape) == expected:
        state_dict[spectrum_key] = kernel_to_spectrum(weight, conv.param_ratio)
    else:
        error_msgs.append(
            f'size mismatch for {weight_key}: copying a param with shape {given.shape} from '
            f'checkpoint, the shape in current model is {torch.Size(expected)}.'
        )
