"""FDConv's per-sample aggregate kernels (docs/spec.md sections 4-5), with a hand-written
backward: the fast path's kernels (:mod:`.reference` is the definition it is tested against).

The kernels are built as matrices ``(B, Cout*kh, Cin*kw)`` laid out ``(co, i, ci, j)``, the
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
from typing import Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .ksm import local_logits, local_logits_backward
from .reference import position_groups


class KernelInputs(NamedTuple):
    """What the kernels are built from (each tensor or None where its factor is absent).

    Attributes:
        groups (Tensor): (Cout*kh, Cin*kw // 2 + 1) int64, the frequency group of each
            Fourier position (no gradient).
        spectrum (Tensor): (P, Cout*kh, Cin*kw // 2 + 1, 2), the Fourier weight.
        group_attention (Tensor | None): (B, K*P).
        local_features (Tensor | None): (B, Cin), KSM-local's normalized channel means.
        local_weight (Tensor | None): (Cout*kh*kw, 1, e), KSM-local's Conv1d weight.
        row_scale (Tensor | None): (B, Cout or 1, kh, 1, kw), spatial (and filter) attention.
        column_scale (Tensor | None): (B, 1, 1, Cin, 1), channel attention.
    """

    groups: Tensor
    spectrum: Tensor
    group_attention: Optional[Tensor]
    local_features: Optional[Tensor]
    local_weight: Optional[Tensor]
    row_scale: Optional[Tensor]
    column_scale: Optional[Tensor]


@dataclass
class KernelCache:
    """What the backward pass needs from the rebuilt kernels."""

    group_map: Optional[Tensor]  # alpha * ka spread to every Fourier position
    fourier: Tensor  # irfft2 kernels, (B or 1, Cout, kh, Cin, kw)
    local: Optional[Tensor]  # KSM-local's activation h(z), (B, Cout, kh, Cin, kw)


@dataclass(frozen=True)
class KernelSynthesis:
    """Builds ``A`` from its :class:`KernelInputs` and back-propagates into them.

    Args:
        out_channels, in_channels (int): The layer's channels.
        kernel_size (tuple[int, int]): ``(kh, kw)``.
        kernel_num (int): ``K``.
        param_ratio (int): ``P``.
        alpha (float): ``min(Cin, Cout) // 2 * K * P``.
        local_act (str): KSM-local's 'sigmoid' or 'tanh'.
        att_multi (float): ``m`` of the sigmoid.
    """

    out_channels: int
    in_channels: int
    kernel_size: Tuple[int, int]
    kernel_num: int
    param_ratio: int
    alpha: float
    local_act: str = 'sigmoid'
    att_multi: float = 2.0

    @property
    def matrix_size(self) -> Tuple[int, int]:
        return self.out_channels * self.kernel_size[0], self.in_channels * self.kernel_size[1]

    def _local_factor(self, row_scale: Optional[Tensor], column_scale: Optional[Tensor]):
        """The small factor that multiplies ``h(z)`` (or the kernels without KSM-local)."""
        factor = None
        for scale in (row_scale, column_scale):
            if scale is not None:
                factor = scale if factor is None else factor * scale
        return factor

    @property
    def block_shape(self) -> Tuple[int, int, int, int]:
        """The kernel matrices' ``(Cout, kh, Cin, kw)`` blocks."""
        kernel_h, kernel_w = self.kernel_size
        return self.out_channels, kernel_h, self.in_channels, kernel_w

    def build(
        self, inputs: KernelInputs, keep: bool = False
    ) -> Tuple[Tensor, Optional[KernelCache]]:
        """The kernel matrices (B or 1, Cout*kh, Cin*kw) and, if ``keep``, a cache."""
        spectrum = inputs.spectrum
        dtype = torch.promote_types(spectrum.dtype, torch.float32)
        with torch.autocast(spectrum.device.type, enabled=False):
            fourier, group_map = fourier_matrices(
                spectrum,
                inputs.group_attention,
                inputs.groups,
                self.kernel_num,
                self.param_ratio,
                self.alpha,
                self.matrix_size,
            )
            fourier = fourier.view(-1, *self.block_shape)
            factor = self._local_factor(inputs.row_scale, inputs.column_scale)
            factor = None if factor is None else factor.to(dtype)
            local = None
            if inputs.local_features is not None:
                logits = local_logits(
                    inputs.local_features.to(dtype),
                    inputs.local_weight.to(dtype),
                    self.kernel_size[1],
                )
                local = logits.view(-1, *self.block_shape)
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
        inputs: KernelInputs,
        cache: KernelCache,
        grad_kernels: Tensor,
        needs: KernelInputs,
    ) -> KernelInputs:
        """Gradients of the inputs (None where ``needs`` is false) from ``dL/dA``.

        Args:
            inputs (KernelInputs): As :meth:`build`'s.
            cache (KernelCache): From ``build(inputs, keep=True)``; its tensors are
                overwritten.
            grad_kernels (Tensor): (B, Cout*kh, Cin*kw).
            needs (KernelInputs): Which inputs need a gradient (bools).
        """
        row_scale, column_scale = inputs.row_scale, inputs.column_scale
        dtype = cache.fourier.dtype
        batch, spectrum_batch = grad_kernels.shape[0], cache.fourier.shape[0]
        grads: Dict[str, Optional[Tensor]] = dict.fromkeys(KernelInputs._fields)
        grad = grad_kernels.to(dtype).view(batch, *self.block_shape)
        local = cache.local
        factor = self._local_factor(row_scale, column_scale)
        factor = None if factor is None else factor.to(dtype)
        sigmoid_multi = self.att_multi if local is not None and self.local_act != 'tanh' else 1.0
        needs_local = needs.local_features or needs.local_weight
        if needs_local or needs.row_scale or needs.column_scale:
            # dL/d(h(z) * factor) = grad * fourier; times h(z) it gives the scales'.
            # (fourier is not needed afterwards: it holds the product where it can.)
            through = _scaled(cache.fourier, grad, in_place=True)
            if local is not None:
                through.mul_(local)
            for name, scale, other in (
                ('row_scale', row_scale, column_scale),
                ('column_scale', column_scale, row_scale),
            ):
                if getattr(needs, name) and other is None:  # sum first: no kernel-sized product
                    grads[name] = through.sum_to_size(scale.shape) * sigmoid_multi
                elif getattr(needs, name):
                    other = other.to(dtype) * sigmoid_multi
                    grads[name] = (through * other).sum_to_size(scale.shape)
            if local is not None and needs_local:
                # through = dL/dh * h; dh/dz = h (1 - h) (sigmoid), h (2 - h) (1 + tanh)
                if factor is not None or sigmoid_multi != 1.0:
                    through.mul_(sigmoid_multi if factor is None else factor * sigmoid_multi)
                if self.local_act == 'tanh':
                    through.mul_(2).addcmul_(through, local, value=-0.5)
                else:
                    through.addcmul_(through, local, value=-1)
                grads['local_features'], grads['local_weight'] = local_logits_backward(
                    through.view(batch, *self.matrix_size),
                    inputs.local_features.to(dtype),
                    inputs.local_weight.to(dtype),
                    self.kernel_size[1],
                    (needs.local_features, needs.local_weight),
                )
            del through
        if needs.spectrum or needs.group_attention:
            # dL/dfourier = grad * h(z) * factor, summed over the batch for a shared kernel.
            if local is not None:
                grad.mul_(local)
            if factor is not None or sigmoid_multi != 1.0:
                grad.mul_(sigmoid_multi if factor is None else factor * sigmoid_multi)
            if spectrum_batch == 1 and batch > 1:
                grad = grad.sum(0, keepdim=True)
            grads['spectrum'], grads['group_attention'] = self._fourier_backward(
                inputs.groups,
                inputs.spectrum,
                cache.group_map,
                grad,
                (needs.spectrum, needs.group_attention),
            )
        return KernelInputs(
            *(
                None if grads[name] is None or tensor is None else grads[name].to(tensor.dtype)
                for name, tensor in zip(KernelInputs._fields, inputs)
            )
        )

    def _fourier_backward(
        self,
        groups: Tensor,
        spectrum: Tensor,
        group_map: Optional[Tensor],
        grad: Tensor,
        needs: Tuple[bool, bool],
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Gradients of ``spectrum`` and ``group_attention`` from ``dL/dirfft2``."""
        needs_spectrum, needs_group = needs
        rows, cols = self.matrix_size
        # irfft2's adjoint: rfft2 scaled by 1/N, the columns standing for two conjugate
        # frequencies doubled (torch's own formula for c2r).
        grad_mixed = torch.fft.rfft2(grad.view(-1, rows, cols), norm='forward')
        grad_mixed[..., 1 : cols - grad_mixed.shape[-1] + 1] *= 2  # (B, rows, cols // 2 + 1)
        spectrum = spectrum.to(torch.view_as_real(grad_mixed).dtype)
        grad_spectrum = grad_group = None
        if group_map is None:
            if needs_spectrum:
                grad_spectrum = torch.view_as_real(grad_mixed.sum(0, keepdim=True)) * self.alpha
                grad_spectrum = grad_spectrum.expand_as(spectrum).contiguous()
            return grad_spectrum, None
        batch = group_map.shape[0]
        grad_mixed = grad_mixed.unsqueeze(1)  # (B, 1, rows, cols // 2 + 1)
        if needs_spectrum:
            # sum_b dL/dmixed_b * map_b, accumulated sample by sample: no batch-sized product.
            grad_spectrum = torch.mul(grad_mixed[0], group_map[0])
            for sample in range(1, batch):
                grad_spectrum.addcmul_(grad_mixed[sample], group_map[sample])
            grad_spectrum = torch.view_as_real(grad_spectrum)
        if needs_group:
            # Re(conj(S) * dL/dmixed) from the real and imaginary parts as strided views:
            # one real map per sample, never the complex product.
            grad_pairs = torch.view_as_real(grad_mixed)
            position_grad = torch.mul(grad_pairs[..., 0], spectrum[..., 0])
            position_grad = position_grad.addcmul_(grad_pairs[..., 1], spectrum[..., 1])
            position_grad = position_grad.view(batch, -1)
            grad_group = position_grad.new_zeros(batch, self.kernel_num * self.param_ratio)
            index = position_groups(groups, self.kernel_num, self.param_ratio)
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


def fourier_matrices(
    spectrum: Tensor,
    group_attention: Optional[Tensor],
    groups: Tensor,
    kernel_num: int,
    param_ratio: int,
    alpha: float,
    size: Tuple[int, int],
) -> Tuple[Tensor, Optional[Tensor]]:
    """FDW (docs/spec.md section 4): each sample's kernel matrix from the Fourier weight.

    ``irfft2(alpha * sum_p S_p * ka[p*K + group])``, in float32 (float64 for a float64
    spectrum). Differentiable; the caller disables autocast.

    Args:
        spectrum (Tensor): (P, Cout*kh, Cin*kw // 2 + 1, 2).
        group_attention (Tensor | None): (B, K*P), or None for a single group.
        groups (Tensor): (Cout*kh, Cin*kw // 2 + 1) frequency group of each position.
        kernel_num, param_ratio (int): ``K``, ``P``.
        alpha (float): ``min(Cin, Cout) // 2 * K * P``.
        size (tuple[int, int]): ``(Cout*kh, Cin*kw)``.

    Returns:
        tuple: the matrices (B, Cout*kh, Cin*kw) (B is 1 without group attention), laid
        out ``(co, i, ci, j)``; and ``alpha * ka`` spread to every position
        (B, P, Cout*kh, Cin*kw // 2 + 1), or None.
    """
    spectrum = spectrum.to(torch.promote_types(spectrum.dtype, torch.float32))
    if group_attention is None:
        group_map = None
        mixed = torch.view_as_complex(spectrum.sum(0, keepdim=True) * alpha)
    else:
        # Each Fourier position takes the attention of its group: one gather of the
        # (B, K*P) attentions, scaled by alpha before they are spread out; a complex
        # times a real map (not the (re, im) pairs times a broadcast map, whose innermost
        # loop would run over 2 elements).
        index = position_groups(groups, kernel_num, param_ratio)
        group_map = torch.index_select(group_attention.to(spectrum.dtype) * alpha, 1, index)
        group_map = group_map.view(-1, param_ratio, *groups.shape)
        mixed = torch.view_as_complex(spectrum.contiguous()) * group_map
        mixed = mixed[:, 0] if param_ratio == 1 else mixed.sum(1)
    return irfft2_matrices(mixed, size), group_map


# Spectra with more columns than this take irfft2_matrices' per-sample copies (measured
# faster from 513 columns on, slower at 257: ResNet-50's 2048 -> 512 1x1 at B = 2).
WIDE_SPECTRUM = 512


def irfft2_matrices(spectra: Tensor, size: Tuple[int, int]) -> Tensor:
    """``torch.fft.irfft2(spectra, s=size)``: (B, rows, cols // 2 + 1) complex -> (B, rows, cols).

    On the CPU, torch's ``irfft2`` returns its transform along the rows transposed and
    makes it contiguous for the transform along the columns with one batched strided copy.
    For wide matrices that copy took longer than both transforms (5 of 9.5 ms for a
    1536 x 1536 matrix here); a copy per sample takes torch's blocked 2-D transpose
    instead (5.5 ms in all). For narrower ones torch's own is as fast or faster.
    """
    narrow = spectra.shape[-1] <= WIDE_SPECTRUM
    if narrow or spectra.device.type != 'cpu' or torch.compiler.is_compiling():
        return torch.fft.irfft2(spectra, s=size)
    rows = torch.fft.ifft(spectra, dim=-2)
    if not rows.is_contiguous():
        transposed, rows = rows, torch.empty_like(rows, memory_format=torch.contiguous_format)
        for sample, values in zip(rows, transposed):
            sample.copy_(values)
    return torch.fft.irfft(rows, n=size[1], dim=-1)
