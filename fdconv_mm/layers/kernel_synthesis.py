"""FDConv's per-sample aggregate kernels (SPEC sections 4-5), with a hand-written backward.

The kernels are built as matrices ``(B, Cout*k, Cin*k)`` laid out ``(co, i, ci, j)``, the
layout of ``irfft2``'s output, and every attention is brought to that layout:

``A = irfft2(alpha * S * ka[group]) * h(z) * row * column``

with ``z`` KSM-local's logits, ``h`` its activation, ``row`` the spatial (and filter)
attention and ``column`` the channel attention. The kernels are big (a batch of them is
``B`` times the layer's weight) and cheap to rebuild from small inputs, so
:class:`~.sample_conv.SampleConv` rebuilds them in the backward pass (or keeps them, in
FDConv's ``keep_for_backward`` mode); the
backward here then runs without an autograd graph, in place where it can: fewer passes
over kernel-sized tensors and fewer of them alive at once than autograd would use.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .ksm import local_logits, local_logits_backward


@dataclass
class KernelCache:
    """What the backward pass needs from the rebuilt kernels."""

    group_map: Optional[Tensor]  # alpha * ka spread to every Fourier position
    fourier: Tensor  # irfft2 kernels, (B or 1, Cout, k, Cin, k)
    local: Optional[Tensor]  # KSM-local's activation h(z), (B, Cout, k, Cin, k)


@dataclass(frozen=True)
class KernelSynthesis:
    """Builds ``A`` from its inputs and back-propagates into them.

    The inputs, in order: ``groups`` (Cout*k, Cin*k // 2 + 1), the frequency group of
    each position (int64, no gradient), ``spectrum`` (P, Cout*k, Cin*k // 2 + 1, 2),
    ``group_attention``
    (B, K*P) or None, ``local_features`` (B, Cin) (KSM-local's normalized means) or None,
    ``local_weight`` (KSM-local's Conv1d weight) or None, ``row_scale``
    (B, Cout or 1, k, 1, k) or None, ``column_scale`` (B, 1, 1, Cin, 1) or None.

    Args:
        out_channels, in_channels, kernel_size (int): The layer's shape.
        kernel_num (int): ``K``.
        param_ratio (int): ``P``.
        alpha (float): ``min(Cin, Cout) // 2 * K * P``.
        local_act (str): KSM-local's 'sigmoid' or 'tanh'.
        att_multi (float): ``m`` of the sigmoid.
    """

    out_channels: int
    in_channels: int
    kernel_size: int
    kernel_num: int
    param_ratio: int
    alpha: float
    local_act: str = 'sigmoid'
    att_multi: float = 2.0

    @property
    def matrix_size(self) -> Tuple[int, int]:
        return self.out_channels * self.kernel_size, self.in_channels * self.kernel_size

    def _local_factor(self, row_scale: Optional[Tensor], column_scale: Optional[Tensor]):
        """The small factor that multiplies ``h(z)`` (or the kernels without KSM-local)."""
        factor = None
        for scale in (row_scale, column_scale):
            if scale is not None:
                factor = scale if factor is None else factor * scale
        return factor

    def build(
        self, *inputs: Optional[Tensor], keep: bool = False
    ) -> Tuple[Tensor, Optional[KernelCache]]:
        """The kernel matrices (B or 1, Cout*k, Cin*k) and, if ``keep``, a cache."""
        groups, spectrum, group_att, local_features, local_weight, row_scale, column_scale = inputs
        dtype = torch.promote_types(spectrum.dtype, torch.float32)
        cout, cin, k = self.out_channels, self.in_channels, self.kernel_size
        with torch.autocast(spectrum.device.type, enabled=False):
            fourier, group_map = fourier_kernels(
                spectrum,
                group_att,
                groups,
                self.kernel_num,
                self.param_ratio,
                self.alpha,
                self.matrix_size,
            )
            fourier = fourier.view(-1, cout, k, cin, k)
            factor = self._local_factor(row_scale, column_scale)
            factor = None if factor is None else factor.to(dtype)
            local = None
            if local_features is not None:
                logits = local_logits(local_features.to(dtype), local_weight.to(dtype), k)
                local = logits.view(-1, cout, k, cin, k)
                if self.local_act == 'tanh':
                    local.tanh_().add_(1)
                else:
                    local.sigmoid_()
                    factor = self.att_multi if factor is None else factor * self.att_multi
            kernels = _scaled(fourier, local if local is not None else factor, in_place=not keep)
            if local is not None and factor is not None:
                kernels.mul_(factor)
        cache = KernelCache(group_map, fourier, local) if keep else None
        return kernels.view(-1, *self.matrix_size), cache

    def backward(
        self,
        inputs: Sequence[Optional[Tensor]],
        cache: KernelCache,
        grad_kernels: Tensor,
        needs: Sequence[bool],
    ) -> Tuple[Optional[Tensor], ...]:
        """Gradients of the inputs (None where ``needs`` is false) from ``dL/dA``.

        Args:
            inputs: As :meth:`build`'s.
            cache: From ``build(*inputs, keep=True)``; its tensors are overwritten.
            grad_kernels (Tensor): (B, Cout*k, Cin*k).
            needs (Sequence[bool]): Which inputs need a gradient.
        """
        groups, spectrum, group_att, local_features, local_weight, row_scale, column_scale = inputs
        dtype = cache.fourier.dtype
        cout, cin, k = self.out_channels, self.in_channels, self.kernel_size
        batch, spectrum_batch = grad_kernels.shape[0], cache.fourier.shape[0]
        grads = [None] * 7
        grad = grad_kernels.to(dtype).view(batch, cout, k, cin, k)
        local = cache.local
        factor = self._local_factor(row_scale, column_scale)
        factor = None if factor is None else factor.to(dtype)
        sigmoid_multi = self.att_multi if local is not None and self.local_act != 'tanh' else 1.0
        needs_scales = needs[5] or needs[6]
        if needs[3] or needs[4] or needs_scales:
            # dL/d(h(z) * factor) = grad * fourier; times h(z) it gives the scales'.
            # (fourier is not needed afterwards: it holds the product where it can.)
            through = _scaled(cache.fourier, grad, in_place=True)
            if local is not None:
                through.mul_(local)
            for index, scale, other in ((5, row_scale, column_scale), (6, column_scale, row_scale)):
                if needs[index] and other is None:  # sum first: no kernel-sized product
                    grads[index] = through.sum_to_size(scale.shape) * sigmoid_multi
                elif needs[index]:
                    other = other.to(dtype) * sigmoid_multi
                    grads[index] = (through * other).sum_to_size(scale.shape)
            if local is not None and (needs[3] or needs[4]):
                # through = dL/dh * h; dh/dz = h (1 - h) (sigmoid), h (2 - h) (1 + tanh)
                if factor is not None or sigmoid_multi != 1.0:
                    through.mul_(sigmoid_multi if factor is None else factor * sigmoid_multi)
                if self.local_act == 'tanh':
                    through.mul_(2).addcmul_(through, local, value=-0.5)
                else:
                    through.addcmul_(through, local, value=-1)
                grads[3], grads[4] = local_logits_backward(
                    through.view(batch, *self.matrix_size),
                    local_features.to(dtype),
                    local_weight.to(dtype),
                    k,
                    (needs[3], needs[4]),
                )
            del through
        if needs[1] or needs[2]:
            # dL/dfourier = grad * h(z) * factor, summed over the batch for a shared kernel.
            if local is not None:
                grad.mul_(local)
            if factor is not None or sigmoid_multi != 1.0:
                grad.mul_(sigmoid_multi if factor is None else factor * sigmoid_multi)
            if spectrum_batch == 1 and batch > 1:
                grad = grad.sum(0, keepdim=True)
            grads[1], grads[2] = self._fourier_backward(
                groups, spectrum, cache.group_map, grad, (needs[1], needs[2])
            )
        return tuple(
            None if g is None or t is None else g.to(t.dtype) for g, t in zip(grads, inputs)
        )

    def _fourier_backward(
        self,
        groups: Tensor,
        spectrum: Tensor,
        group_map: Optional[Tensor],
        grad: Tensor,
        needs: Sequence[bool],
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Gradients of ``spectrum`` and ``group_attention`` from ``dL/dirfft2``."""
        rows, cols = self.matrix_size
        # irfft2's adjoint: rfft2 scaled by 1/N, the columns standing for two conjugate
        # frequencies doubled (torch's own formula for c2r).
        grad_mixed = torch.fft.rfft2(grad.view(-1, rows, cols), norm='forward')
        grad_mixed[..., 1 : cols - grad_mixed.shape[-1] + 1] *= 2
        grad_mixed = torch.view_as_real(grad_mixed)  # (B, rows, cols // 2 + 1, 2)
        spectrum = spectrum.to(grad_mixed.dtype)
        grad_spectrum = grad_group = None
        if group_map is None:
            if needs[0]:
                grad_spectrum = grad_mixed.sum(0, keepdim=True) * self.alpha
                grad_spectrum = grad_spectrum.expand_as(spectrum).contiguous()
            return grad_spectrum, None
        batch = group_map.shape[0]
        grad_mixed = grad_mixed.unsqueeze(1)  # (B, 1, rows, cols // 2 + 1, 2)
        if needs[0]:
            # sum_b dL/dmixed_b * map_b, accumulated sample by sample: no batch-sized product.
            grad_spectrum = torch.mul(grad_mixed[0], group_map[0])
            for sample in range(1, batch):
                grad_spectrum.addcmul_(grad_mixed[sample], group_map[sample])
        if needs[1]:
            # Re(conj(S) * dL/dmixed) from the real and imaginary parts as strided views:
            # one real map per sample, never the complex product.
            position_grad = torch.mul(grad_mixed[..., 0], spectrum[..., 0])
            position_grad = position_grad.addcmul_(grad_mixed[..., 1], spectrum[..., 1])
            position_grad = position_grad.view(batch, -1)
            grad_group = grad_mixed.new_zeros(batch, self.kernel_num * self.param_ratio)
            index = _position_groups(groups, self.kernel_num, self.param_ratio)
            grad_group.index_add_(1, index, position_grad)
            grad_group.mul_(self.alpha)
        return grad_spectrum, grad_group


def _scaled(tensor: Tensor, scale: Optional[Tensor], in_place: bool) -> Tensor:
    """``tensor * scale``, in place if allowed and the shapes permit."""
    if scale is None:
        return tensor
    if in_place and torch.broadcast_shapes(tensor.shape, scale.shape) == tensor.shape:
        return tensor.mul_(scale)
    return tensor * scale


def _position_groups(groups: Tensor, kernel_num: int, param_ratio: int) -> Tensor:
    """Index into the (B, K*P) attentions of every (copy, position)."""
    index = groups.view(-1)
    if param_ratio > 1:
        offsets = torch.arange(param_ratio, device=index.device) * kernel_num
        index = (index + offsets.view(-1, 1)).view(-1)
    return index


def fourier_kernels(
    spectrum: Tensor,
    group_attention: Optional[Tensor],
    groups: Tensor,
    kernel_num: int,
    param_ratio: int,
    alpha: float,
    size: Tuple[int, int],
) -> Tuple[Tensor, Optional[Tensor]]:
    """FDW (SPEC section 4): each sample's kernel matrix from the Fourier weight.

    ``irfft2(alpha * sum_p S_p * ka[p*K + group])``, in float32 (float64 for a float64
    spectrum). Differentiable; the caller disables autocast.

    Args:
        spectrum (Tensor): (P, Cout*k, Cin*k // 2 + 1, 2).
        group_attention (Tensor | None): (B, K*P), or None for a single group.
        groups (Tensor): (Cout*k, Cin*k // 2 + 1) frequency group of each position.
        kernel_num, param_ratio (int): ``K``, ``P``.
        alpha (float): ``min(Cin, Cout) // 2 * K * P``.
        size (tuple[int, int]): ``(Cout*k, Cin*k)``.

    Returns:
        tuple: the matrices (B, Cout*k, Cin*k) (B is 1 without group attention), laid
        out ``(co, i, ci, j)``; and ``alpha * ka`` spread to every position
        (B, P, Cout*k, Cin*k // 2 + 1, 1), or None.
    """
    spectrum = spectrum.to(torch.promote_types(spectrum.dtype, torch.float32))
    if group_attention is None:
        group_map = None
        mixed = spectrum.sum(0, keepdim=True) * alpha
    else:
        # Each Fourier position takes the attention of its group: one gather of the
        # (B, K*P) attentions, scaled by alpha before they are spread out.
        index = _position_groups(groups, kernel_num, param_ratio)
        group_map = torch.index_select(group_attention.to(spectrum.dtype) * alpha, 1, index)
        group_map = group_map.view(-1, param_ratio, *groups.shape, 1)
        mixed = spectrum * group_map
        mixed = mixed[:, 0] if param_ratio == 1 else mixed.sum(1)
    return torch.fft.irfft2(torch.view_as_complex(mixed), s=size), group_map
