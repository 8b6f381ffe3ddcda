"""Analytic count of the element-wise work of active FDConv layers that a tracer ignores.

mmengine's ``FlopAnalyzer`` (fvcore's method) counts convolutions, linear layers and
norms, and ignores element-wise products. FDConv's own work is counted so:

* its convolutions (the per-sample conv, KSM's 1x1 convs and Conv1d, FBM's band convs)
  and norms by the tracer's conv/norm handles, its FFTs by :mod:`.fft_flops`;
* the element-wise products that define it (docs/spec.md sections 4-6) by this module,
  one flop per real multiply-add, as the tracer counts a conv:

  - ``spectrum_mixing``: ``S_b[f] = sum_p ka[b, p, group(f)] * dft_weight[p, f]``, one
    complex-by-real multiply-add (2 flops) per sample, copy and Fourier position:
    ``2 * B * P * Cout*k * (Cin*k // 2 + 1)`` (``B`` is 1 with a single group: the kernel
    is shared); the constant ``alpha`` is foldable into the weight and not counted;
  - ``kernel_modulation``: one multiply per element of the ``(B, Cout, Cin, k, k)`` kernel
    for each attention present among KSM-local's ``hr``, the spatial ``sa``, channel
    ``ca`` and filter ``fa`` attentions: ``B * Cout * Cin * k^2`` per factor (the layer may
    apply ``ca``/``fa`` to the features where that is cheaper; the count keeps the
    definition's);
  - ``band_weighting``: ``w_i * high_i`` summed into the output, one multiply-add per
    element of the ``(B, Cin, H, W)`` input for each weighted band.

Not counted, as the tracer counts none of them elsewhere: activations, the channel means,
the 0/1 band masks (a selection), additions and constant scalings.
"""

from collections import Counter
from contextlib import contextmanager
from typing import Dict, Iterator, Sequence

from torch import nn

from ..layers import FDConv, FDConvLinear

ELEMENTWISE_TERMS = ('spectrum_mixing', 'kernel_modulation', 'band_weighting')


def is_active_fdconv(module: nn.Module) -> bool:
    """Whether ``module`` is an FDConv layer doing FDConv's work (not a plain conv)."""
    return isinstance(module, FDConv) and bool(getattr(module, 'fdconv_active', False))


def fdconv_elementwise_flops(layer: FDConv, input_shape: Sequence[int]) -> Counter:
    """Element-wise flops of one call of an active FDConv layer (see the module doc).

    Args:
        layer (FDConv): An active FDConv or FDConvLinear.
        input_shape (Sequence[int]): Its input, (B, Cin, H, W) or, for FDConvLinear,
            (B, L, Cin).

    Returns:
        Counter: flops under the names of ``ELEMENTWISE_TERMS``.
    """
    batch = int(input_shape[0])
    k = layer.kernel_size[0]
    cout, cin = layer.out_channels, layer.in_channels
    ksm_global = layer.KSM_Global
    copies = layer.param_ratio
    positions = cout * k * (cin * k // 2 + 1)
    mixed_batch = batch if ksm_global.kernel_fc is not None else 1
    factors = sum(
        part is not None
        for part in (
            layer.KSM_Local,
            ksm_global.spatial_fc,
            ksm_global.channel_fc,
            ksm_global.filter_fc,
        )
    )
    counts = Counter(
        spectrum_mixing=2 * mixed_batch * copies * positions,
        kernel_modulation=factors * batch * cout * cin * k * k,
    )
    fbm = layer.FBM
    if fbm is not None and not isinstance(layer, FDConvLinear):
        height, width = int(input_shape[-2]), int(input_shape[-1])
        bands = len(fbm.freq_weight_conv_list)
        counts['band_weighting'] = bands * batch * cin * height * width
    return counts


@contextmanager
def record_fdconv_elementwise(model: nn.Module) -> Iterator[Dict[str, Counter]]:
    """Count the element-wise flops of every active FDConv call while the block runs.

    Yields:
        dict: module name (as ``model.named_modules()``) -> Counter of
        ``ELEMENTWISE_TERMS``, summed over the calls of that layer; filled as it runs.
    """
    counts: Dict[str, Counter] = {}
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            counts.setdefault(name, Counter()).update(
                fdconv_elementwise_flops(module, tuple(args[0].shape))
            )

        return hook

    for name, module in model.named_modules():
        if is_active_fdconv(module):
            handles.append(module.register_forward_hook(make_hook(name)))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()
