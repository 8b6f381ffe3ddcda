"""FDConv's training and inference path (the fast path).

It computes the function of :mod:`.reference` with fewer passes over kernel-sized and
feature-sized tensors: the small attentions come from autograd as usual; the per-sample
kernels (:mod:`.kernel_synthesis`) and the FBM-modulated input are built inside one
autograd function (:mod:`.sample_conv`) with hand-written gradients, which by default
keeps neither for the backward pass and rebuilds both there (FDConv's
``keep_for_backward`` keeps them instead). Where the kernels outweigh the feature maps
(:meth:`FDConv.kernel_dominates`), the channel and filter attentions scale the input and
output instead of the kernels: the same function (docs/spec.md section 5).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernel_synthesis import KernelInputs
from .sample_conv import FeatureInputs, sample_conv


def spatial_mean(x: Tensor) -> Tensor:
    """``x.mean(dim=(2, 3), keepdim=True)``: (B, C, H, W) -> (B, C, 1, 1).

    Summed (in at least float32), then divided: the backward pass of a sum is the small
    gradient expanded, a view, where a mean's divides that expanded gradient, an input-sized
    tensor more to write and add per layer and step (2 x 256 x 128^2: 7.6 ms a layer).
    """
    total = x.sum(dim=(2, 3), keepdim=True, dtype=torch.promote_types(x.dtype, torch.float32))
    return (total / (x.shape[-2] * x.shape[-1])).to(x.dtype)


def forward_fast(conv: nn.Module, x: Tensor) -> Tensor:
    """An active FDConv: (B, Cin, H, W) -> (B, Cout, H', W').

    Args:
        conv (FDConv): An active layer.
        x (Tensor): (B, Cin, H, W), B > 0.
    """
    batch, _, height, width = x.shape
    kernel_h, kernel_w = conv.kernel_size
    cout, cin = conv.out_channels, conv.in_channels
    pooled = spatial_mean(x)
    channel_att, filter_att, spatial_att, group_att = conv.KSM_Global(pooled)
    on_features = conv.kernel_dominates(height, width)
    row_scale = None if spatial_att is None else spatial_att.view(batch, 1, kernel_h, 1, kernel_w)
    column_scale = None
    if not on_features:
        if filter_att is not None:
            filters = filter_att.view(batch, cout, 1, 1, 1)
            row_scale = filters if row_scale is None else row_scale * filters
        if channel_att is not None:
            column_scale = channel_att.view(batch, 1, 1, cin, 1)
    fbm_weight, fbm_bias = conv.FBM.stacked_conv() if conv.FBM is not None else (None, None)
    feature_scale = None
    if on_features and channel_att is not None:
        feature_scale = channel_att.view(batch, cin, 1, 1)
    local = conv.KSM_Local
    kernel_inputs = KernelInputs(
        groups=conv.frequency_groups,
        spectrum=conv.fourier_weight(),
        group_attention=group_att,
        local_features=None if local is None else local.normalize(pooled),
        local_weight=None if local is None else local.conv.weight,
        row_scale=row_scale,
        column_scale=column_scale,
    )
    scale_output = on_features and filter_att is not None
    out = sample_conv(
        conv.conv_features,
        conv.synthesis,
        conv.conv_geometry,
        x,
        None if scale_output else conv.bias,
        FeatureInputs(fbm_weight, fbm_bias, feature_scale),
        kernel_inputs,
        conv.keep_for_backward,
    )
    if scale_output:
        filters = filter_att.view(batch, cout, 1, 1).to(out.dtype)
        if conv.bias is None:
            return out * filters
        return torch.addcmul(conv.bias.view(1, -1, 1, 1).to(out.dtype), out, filters)
    return out


def forward_empty(conv: nn.Module, x: Tensor) -> Tensor:
    """A batch of no samples (e.g. no RoI): (0, Cin, H, W) -> (0, Cout, H', W').

    As ``nn.Conv2d``: an empty output whose backward pass gives every parameter a zero
    gradient (DDP expects one for each). The global KSM still runs, so that a
    ``SyncBatchNorm`` in it still joins the other processes' collectives.
    """
    features = conv.conv_features(x, None, None, None)
    geometry = conv.conv_geometry
    out = F.conv2d(
        features,
        features.new_zeros(conv.out_channels, conv.in_channels, *conv.kernel_size),
        None if conv.bias is None else conv.bias.to(features.dtype),
        geometry.stride,
        geometry.padding,
        geometry.dilation,
    )
    attentions = conv.KSM_Global(spatial_mean(x))
    anchors = [p.view(-1)[0] for p in conv.parameters()]
    anchors += [a.sum() for a in attentions if a is not None]
    return out + sum(anchors).to(out.dtype) * 0
