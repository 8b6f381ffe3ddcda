"""Per-sample convolution: each sample of a batch convolved with its own kernel.

The kernels arrive as FDConv builds them, matrices ``(B, Cout*kh, Cin*kw)`` laid out
``(co, i, ci, j)``. On the CPU, 1x1 kernels and kernels that outweigh the input patches
multiply the patches unfolded in that layout (one batched matmul); the others, and every
kernel on other devices, run as one grouped ``conv2d`` (``groups=B``), permuted to its
``(co, ci, i, j)`` layout (:meth:`SampleConvGeometry.uses_matmul` says which, and why).

Two autograd functions, one per memory mode of FDConv's ``keep_for_backward``:
:class:`RebuildingSampleConv` (the default) keeps neither the kernels nor the convolved
features for the backward pass: it saves their inputs and rebuilds them there (activation
checkpointing). A network of FDConvs would otherwise hold, per layer until the backward
pass, several batch-sized kernels and FBM's bands of the input.
:class:`KeepingSampleConv` holds them instead and skips the rebuild: faster, more memory.
"""

from dataclasses import dataclass
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .frequency import kernel_to_matrix, matrix_to_kernel
from .kernel_synthesis import KernelInputs, KernelSynthesis

Pair = Tuple[int, int]


class FeatureInputs(NamedTuple):
    """What the convolved features are built from, besides the input ``x``.

    Attributes:
        fbm_weight (Tensor | None): FBM's stacked weight convs (G*n, C/G, s, s).
        fbm_bias (Tensor | None): (G*n,).
        channel_scale (Tensor | None): (B, Cin, 1, 1), the channel attention where it
            scales the features instead of the kernels.
    """

    fbm_weight: Optional[Tensor]
    fbm_bias: Optional[Tensor]
    channel_scale: Optional[Tensor]


# make_features(x, *FeatureInputs) -> the features the kernels convolve (B, Cin, H, W).
MakeFeatures = Callable[..., Tensor]


@dataclass(frozen=True)
class SampleConvGeometry:
    """Kernel size, stride, zero padding and dilation of a per-sample conv.

    Args:
        kernel_size, stride, padding, dilation (tuple[int, int]): As ``nn.Conv2d``'s.
    """

    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair

    def conv_weight(self, kernels: Tensor, batch: int) -> Tensor:
        """Kernel matrices (B or 1, Cout*kh, Cin*kw) -> grouped weight (B*Cout, Cin, kh, kw)."""
        rows, cols = kernels.shape[-2:]
        kernel_h, kernel_w = self.kernel_size
        kernels = matrix_to_kernel(kernels.expand(batch, rows, cols), self.kernel_size)
        if kernel_h * kernel_w == 1:
            return kernels.reshape(-1, *kernels.shape[-3:])
        # One copy per kernel row i: 2-4x faster here than one permuted copy (whose
        # innermost loop runs over only kw elements), e.g. 1.5 against 5.4 ms at 512 -> 512.
        weight = kernels.new_empty(kernels.shape)
        for i in range(kernel_h):
            weight[..., i, :].copy_(kernels[..., i, :])
        return weight.view(-1, *weight.shape[-3:])

    def kernel_grad(self, grad_weight: Tensor, batch: int) -> Tensor:
        """Gradient of :meth:`conv_weight`'s output -> kernel matrices (B, Cout*kh, Cin*kw)."""
        return kernel_to_matrix(grad_weight.view(batch, -1, *grad_weight.shape[1:]))

    def output_size(self, height: int, width: int) -> Pair:
        """``(H', W')`` of an ``(H, W)`` input, as ``nn.Conv2d``'s."""
        return tuple(  # type: ignore[return-value]
            (size + 2 * pad - dil * (kernel - 1) - 1) // step + 1
            for size, pad, dil, kernel, step in zip(
                (height, width), self.padding, self.dilation, self.kernel_size, self.stride
            )
        )

    def uses_matmul(self, features: Tensor, out_channels: int) -> bool:
        """Whether the conv of ``features`` (B, Cin, H, W) runs as a batched matmul of the
        kernel matrices with the unfolded features (:meth:`unfold`) instead of a grouped
        ``conv2d``: on the CPU (eager), for 1x1 kernels, and for kernels with at least as
        many elements as the unfolded features (``Cout >= H' * W'``).

        The matmul takes the kernels in their ``irfft2`` layout: no permuted copy of them,
        no oneDNN reorder of a fresh weight, and their gradient comes out in that layout
        too. oneDNN's grouped conv with one group per sample was slow on 1x1 kernels and
        on large maps (measured, 2 threads, fresh kernels each call: 512 -> 512 3x3 on
        16 x 16 maps 6.3 -> 4.9 ms at batch 1, 25.0 -> 11.0 ms at batch 2; 256 -> 64 1x1
        on 128 x 128 maps 17.4 -> 3.9 ms at batch 2); where the unfolded features
        outweigh the kernels (256 -> 256 3x3 on 32 x 32) it was 13-18 % slower.
        """
        if features.device.type != 'cpu' or torch.compiler.is_compiling():
            return False
        if self.kernel_size == (1, 1):
            return True
        out_h, out_w = self.output_size(*features.shape[-2:])
        return out_channels >= out_h * out_w

    @property
    def patches_are_input(self) -> bool:
        """Whether :meth:`unfold` is a view of the input (1x1, stride 1, no padding)."""
        return self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0)

    def unfold(self, features: Tensor) -> Tensor:
        """(B, Cin, H, W) -> (B, kh*Cin*kw, H'*W'), the conv's input patches in the kernel
        matrices' ``(i, ci, j)`` order: row ``(i*Cin + ci)*kw + j`` at output pixel
        ``(y, x)`` holds the zero-padded input at ``(ci, y*s + i*d, x*s + j*d)``."""
        batch, channels, height, width = features.shape
        kernel_h, kernel_w = self.kernel_size
        out_h, out_w = self.output_size(height, width)
        if self.patches_are_input:
            return features.reshape(batch, channels, height * width)
        pad_h, pad_w = self.padding
        padded = features.contiguous()
        if pad_h or pad_w:  # F.pad copies even where it adds nothing
            padded = F.pad(padded, (pad_w, pad_w, pad_h, pad_h))
        padded_h, padded_w = padded.shape[-2:]
        patches = padded.as_strided(
            (batch, kernel_h, channels, kernel_w, out_h, out_w),
            (
                channels * padded_h * padded_w,
                self.dilation[0] * padded_w,
                padded_h * padded_w,
                self.dilation[1],
                self.stride[0] * padded_w,
                self.stride[1],
            ),
        )
        return patches.reshape(batch, kernel_h * channels * kernel_w, out_h * out_w)

    def fold(self, patches: Tensor, height: int, width: int) -> Tensor:
        """Adjoint of :meth:`unfold`: (B, kh*Cin*kw, H'*W') -> (B, Cin, H, W), each
        patch entry added to the input pixel it was taken from."""
        batch = patches.shape[0]
        kernel_h, kernel_w = self.kernel_size
        out_h, out_w = self.output_size(height, width)
        if self.patches_are_input:
            return patches.view(batch, -1, height, width)
        patches = patches.view(batch, kernel_h, -1, kernel_w, out_h, out_w)
        pad_h, pad_w = self.padding
        padded = patches.new_zeros(batch, patches.shape[2], height + 2 * pad_h, width + 2 * pad_w)
        (step_h, step_w), (dil_h, dil_w) = self.stride, self.dilation
        # One strided add per kernel position: the patches overlap where the stride is
        # smaller than the kernel, so no single view of the input can take them.
        for i in range(kernel_h):
            rows = slice(i * dil_h, i * dil_h + step_h * (out_h - 1) + 1, step_h)
            for j in range(kernel_w):
                columns = slice(j * dil_w, j * dil_w + step_w * (out_w - 1) + 1, step_w)
                padded[..., rows, columns] += patches[:, i, :, j]
        return padded[..., pad_h : pad_h + height, pad_w : pad_w + width]

    @staticmethod
    def conv_input(features: Tensor) -> Tensor:
        """(B, Cin, H, W) -> (1, B*Cin, H, W), the grouped conv's input."""
        grouped = features.reshape(1, -1, *features.shape[-2:])
        if torch.compiler.is_compiling():
            # Inductor (torch 2.13) cannot order the strides of this view under dynamic
            # shapes ("cannot determine truth value of Relational", from the second input
            # size on; pytorch/pytorch#185510): a pointwise op gives the conv its own buffer.
            grouped = grouped + 0
        return grouped

    @staticmethod
    def per_sample(out: Tensor, batch: int) -> Tensor:
        """The conv's output ((1, B*Cout, H', W') grouped) -> (B, Cout, H', W'), a view."""
        return out.view(batch, -1, *out.shape[-2:])

    def grouped_conv(
        self, conv_input: Tensor, weight: Tensor, bias: Optional[Tensor], batch: int
    ) -> Tensor:
        """(1, B*Cin, H, W), :meth:`conv_weight` (B*Cout, Cin, kh, kw) -> (1, B*Cout, H', W')."""
        if bias is not None:
            bias = bias.to(conv_input.dtype).repeat(batch)
        return F.conv2d(conv_input, weight, bias, self.stride, self.padding, self.dilation, batch)

    def conv_operand(self, kernels: Tensor, batch: int, matmul: bool) -> Tensor:
        """What the conv takes of the kernel matrices (B or 1, Cout*kh, Cin*kw): the
        matrices themselves for the matmul, :meth:`conv_weight` for the grouped conv."""
        return kernels if matmul else self.conv_weight(kernels, batch)

    def convolve(
        self, features: Tensor, operand: Tensor, bias: Optional[Tensor], matmul: bool
    ) -> Tensor:
        """(B, Cin, H, W) with :meth:`conv_operand` -> the conv output, (B, Cout, H', W')
        by matmul, (1, B*Cout, H', W') by grouped conv (:meth:`per_sample` views either
        as the former)."""
        batch = features.shape[0]
        if not matmul:
            return self.grouped_conv(self.conv_input(features), operand, bias, batch)
        out_h, out_w = self.output_size(*features.shape[-2:])
        matrices = operand.view(operand.shape[0], operand.shape[1] // self.kernel_size[0], -1)
        matrices = matrices.expand(batch, -1, -1)
        out = features.new_empty(batch, matrices.shape[1], out_h, out_w)
        flat = out.view(batch, -1, out_h * out_w)
        patches = self.unfold(features)
        if bias is None:
            torch.bmm(matrices, patches, out=flat)
        else:
            bias = bias.to(features.dtype).view(1, -1, 1).expand_as(flat)
            torch.baddbmm(bias, matrices, patches, out=flat)
        return out

    def conv(self, features: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
        """(B, Cin, H, W) with kernels (B or 1, Cout*kh, Cin*kw) -> the conv output
        (:meth:`convolve`)."""
        matmul = self.uses_matmul(features, kernels.shape[-2] // self.kernel_size[0])
        operand = self.conv_operand(kernels.to(features.dtype), features.shape[0], matmul)
        return self.convolve(features, operand, bias, matmul)

    def conv_backward(
        self,
        grad_output: Tensor,
        features: Tensor,
        operand: Tensor,
        bias: Optional[Tensor],
        matmul: bool,
        needs: Tuple[bool, bool, bool],
    ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
        """Backward pass of :meth:`convolve`.

        Args:
            grad_output (Tensor): The conv output's gradient, of its shape or as
                (B, Cout, H', W').
            needs (tuple[bool, bool, bool]): Whether the features, the kernels and the bias
                need a gradient.

        Returns:
            tuple: Gradients (None where not needed) of the features (B, Cin, H, W), the
            kernel matrices (B, Cout*kh, Cin*kw) and the bias (Cout,).
        """
        needs_features, needs_kernels, needs_bias = needs
        batch, _, height, width = features.shape
        if not matmul:
            grad_input, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad_output.reshape(1, -1, *grad_output.shape[-2:]).to(features.dtype),
                self.conv_input(features),
                operand,
                None if bias is None else [bias.numel() * batch],
                self.stride,
                self.padding,
                self.dilation,
                False,
                [0, 0],
                batch,
                [needs_features, needs_kernels, needs_bias],
            )
            return (
                grad_input.view_as(features) if needs_features else None,
                self.kernel_grad(grad_weight, batch) if needs_kernels else None,
                grad_bias.view(batch, -1).sum(0) if needs_bias else None,
            )
        grad = grad_output.reshape(batch, -1, grad_output.shape[-2] * grad_output.shape[-1])
        grad = grad.to(features.dtype)
        grad_features = grad_kernels = grad_bias = None
        if needs_features:
            matrices = operand.view(operand.shape[0], grad.shape[1], -1).expand(batch, -1, -1)
            grad_features = self.fold(torch.bmm(matrices.transpose(1, 2), grad), height, width)
        if needs_kernels:
            patches = self.unfold(features)
            grad_kernels = torch.bmm(grad, patches.transpose(1, 2)).view(batch, *operand.shape[1:])
        if needs_bias:
            grad_bias = grad.sum((0, 2))
        return grad_features, grad_kernels, grad_bias

    def run(self, features: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
        """(B, Cin, H, W) with kernels (B or 1, Cout*kh, Cin*kw) -> (B, Cout, H', W')."""
        return self.per_sample(self.conv(features, kernels, bias), features.shape[0])


def differentiable_features(
    make_features: MakeFeatures,
    x: Tensor,
    feature_inputs: FeatureInputs,
    needs_x: bool,
    needs_features: FeatureInputs,
) -> Tuple[Tensor, Optional[Callable[[Tensor], Tuple[Tensor, ...]]], List[int]]:
    """The conv's features ``make_features(x, *feature_inputs)``, with their
    vector-Jacobian product in the arguments that need a gradient.

    ``torch.func.vjp`` differentiates it without grad mode (an autograd function's backward
    runs without it), and ``torch.compile`` traces it, where ``torch.autograd.grad`` would
    break the graph.

    Returns:
        tuple: The features (B, Cin, H, W); the vjp (None if no argument needs a
        gradient), which maps the features' gradient to those arguments' gradients; and
        their positions in ``(x, *feature_inputs)``.
    """
    arguments = [x, *feature_inputs]
    needs = [needs_x, *needs_features]
    wanted = [i for i, (t, need) in enumerate(zip(arguments, needs)) if t is not None and need]

    def features_of(*differentiable: Tensor) -> Tensor:
        args = list(arguments)
        for index, tensor in zip(wanted, differentiable):
            args[index] = tensor
        return make_features(*args)

    if not wanted:
        return features_of(), None, wanted
    features, vjp = torch.func.vjp(features_of, *[arguments[i] for i in wanted])
    return features, vjp, wanted


def _conv_and_kernel_backward(
    synthesis: KernelSynthesis,
    geometry: SampleConvGeometry,
    grad_output: Tensor,
    features: Tensor,
    take_operand: Callable[[], Tuple[Tensor, Any]],
    bias: Optional[Tensor],
    matmul: bool,
    kernel_inputs: KernelInputs,
    needs_features: bool,
    needs_bias: bool,
    needs_kernels: KernelInputs,
) -> Tuple[Optional[Tensor], Optional[Tensor], KernelInputs]:
    """The conv's backward, then the kernels' (``synthesis.backward``).

    Args:
        grad_output (Tensor): The conv output's gradient.
        features (Tensor): (B, Cin, H, W), what the kernels convolved.
        take_operand: Returns the conv operand (``geometry.conv_operand``) and the
            synthesis cache, which nothing else then holds: the operand is freed right
            after the conv's backward, before the kernels' (the peak of the step).
        matmul (bool): Which conv ran (``geometry.uses_matmul``).

    Returns:
        tuple: Gradients of the features (B, Cin, H, W), of the bias and of the kernel
        inputs (None where not needed).
    """
    any_kernel = any(needs_kernels)
    operand, cache = take_operand()
    grad_features, grad_kernels, grad_bias = geometry.conv_backward(
        grad_output, features, operand, bias, matmul, (needs_features, any_kernel, needs_bias)
    )
    del operand
    kernel_grads = KernelInputs(*([None] * len(KernelInputs._fields)))
    if any_kernel:
        kernel_grads = synthesis.backward(kernel_inputs, cache, grad_kernels, needs_kernels)
    if grad_bias is not None:
        grad_bias = grad_bias.to(bias.dtype)
    return grad_features, grad_bias, kernel_grads


FEATURE_COUNT = len(FeatureInputs._fields)


class RebuildingSampleConv(torch.autograd.Function):
    """Per-sample conv whose backward pass rebuilds its features and kernels.

    ``apply(make_features, synthesis, geometry, x, bias, *feature_inputs, *kernel_inputs)``
    (:class:`FeatureInputs`, :class:`~.kernel_synthesis.KernelInputs`) returns
    ``geometry.conv(make_features(x, *feature_inputs), synthesis.build(kernel_inputs)[0],
    bias)``. It saves ``x``, ``bias`` and the inputs, neither the features (e.g. FBM's
    output and its bands) nor the kernels: the backward pass rebuilds the features under
    the autocast state of the forward pass (as ``torch.utils.checkpoint`` does),
    differentiated by :func:`differentiable_features`, and the kernels with
    ``synthesis.build``, whose ``synthesis.backward`` back-propagates into the kernel
    inputs.
    """

    @staticmethod
    def forward(
        ctx: Any,
        make_features: MakeFeatures,
        synthesis: KernelSynthesis,
        geometry: SampleConvGeometry,
        x: Tensor,
        bias: Optional[Tensor],
        *inputs: Optional[Tensor],
    ) -> Tensor:
        device = x.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.functions = (make_features, synthesis, geometry)
        ctx.save_for_backward(x, bias, *inputs)
        features = make_features(x, *inputs[:FEATURE_COUNT])
        kernels, _ = synthesis.build(KernelInputs(*inputs[FEATURE_COUNT:]))
        ctx.matmul = geometry.uses_matmul(features, synthesis.out_channels)
        operand = geometry.conv_operand(kernels.to(features.dtype), x.shape[0], ctx.matmul)
        return geometry.convolve(features, operand, bias, ctx.matmul)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, bias, *inputs = ctx.saved_tensors
        make_features, synthesis, geometry = ctx.functions
        needs_x, needs_bias, *needs_inputs = ctx.needs_input_grad[3:]
        feature_inputs = FeatureInputs(*inputs[:FEATURE_COUNT])
        kernel_inputs = KernelInputs(*inputs[FEATURE_COUNT:])
        needs_features = FeatureInputs(*needs_inputs[:FEATURE_COUNT])
        needs_kernels = KernelInputs(*needs_inputs[FEATURE_COUNT:])
        device, autocast, autocast_dtype = ctx.autocast
        with torch.autocast(device, autocast_dtype, enabled=autocast):
            features, features_vjp, wanted = differentiable_features(
                make_features, x, feature_inputs, needs_x, needs_features
            )

        def rebuilt_operand() -> Tuple[Tensor, Any]:
            kernels, cache = synthesis.build(kernel_inputs, keep=any(needs_kernels))
            operand = geometry.conv_operand(kernels.to(features.dtype), x.shape[0], ctx.matmul)
            return operand, cache

        grad_features, grad_bias, kernel_grads = _conv_and_kernel_backward(
            synthesis,
            geometry,
            grad_output,
            features,
            rebuilt_operand,
            bias,
            ctx.matmul,
            kernel_inputs,
            bool(wanted),
            needs_bias,
            needs_kernels,
        )
        argument_grads: List[Optional[Tensor]] = [None] * (1 + FEATURE_COUNT)
        if wanted:
            for index, grad in zip(wanted, features_vjp(grad_features)):
                argument_grads[index] = grad
        return (None, None, None, argument_grads[0], grad_bias, *argument_grads[1:], *kernel_grads)


class KeepingSampleConv(torch.autograd.Function):
    """Per-sample conv that keeps its kernels from the forward pass to the backward pass
    (FDConv's ``keep_for_backward``).

    ``apply(synthesis, geometry, features, bias, *kernel_inputs)`` returns
    ``geometry.conv(features, synthesis.build(kernel_inputs)[0], bias)``. The features are
    built by autograd outside (which keeps what FBM's backward needs); the conv operand and
    the synthesis cache are held until the backward pass, which therefore runs once:
    ``retain_graph`` needs the rebuilding mode.
    """

    @staticmethod
    def forward(
        ctx: Any,
        synthesis: KernelSynthesis,
        geometry: SampleConvGeometry,
        features: Tensor,
        bias: Optional[Tensor],
        *kernel_inputs: Optional[Tensor],
    ) -> Tensor:
        ctx.functions = (synthesis, geometry)
        ctx.save_for_backward(features, bias, *kernel_inputs)
        keep = any(ctx.needs_input_grad[4:])
        kernels, cache = synthesis.build(KernelInputs(*kernel_inputs), keep=keep)
        ctx.matmul = geometry.uses_matmul(features, synthesis.out_channels)
        operand = geometry.conv_operand(kernels.to(features.dtype), features.shape[0], ctx.matmul)
        del kernels
        ctx.kept = (operand, cache)
        return geometry.convolve(features, operand, bias, ctx.matmul)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        features, bias, *kernel_inputs = ctx.saved_tensors
        synthesis, geometry = ctx.functions
        needs_features, needs_bias, *needs_kernels = ctx.needs_input_grad[2:]
        if ctx.kept is None:
            raise RuntimeError(
                'FDConv(keep_for_backward=True) runs one backward pass per forward pass; '
                'for retain_graph=True use keep_for_backward=False'
            )

        def kept_operand() -> Tuple[Tensor, Any]:
            kept, ctx.kept = ctx.kept, None  # synthesis.backward overwrites the cache
            return kept

        grad_features, grad_bias, kernel_grads = _conv_and_kernel_backward(
            synthesis,
            geometry,
            grad_output,
            features,
            kept_operand,
            bias,
            ctx.matmul,
            KernelInputs(*kernel_inputs),
            needs_features,
            needs_bias,
            KernelInputs(*needs_kernels),
        )
        return (None, None, grad_features, grad_bias, *kernel_grads)


def sample_conv(
    make_features: MakeFeatures,
    synthesis: KernelSynthesis,
    geometry: SampleConvGeometry,
    x: Tensor,
    bias: Optional[Tensor],
    feature_inputs: FeatureInputs,
    kernel_inputs: KernelInputs,
    keep_for_backward: bool = False,
) -> Tensor:
    """Per-sample conv of ``make_features(x, *feature_inputs)`` with the kernels
    ``synthesis.build(kernel_inputs)``, both rebuilt for the backward pass
    (:class:`RebuildingSampleConv`), or kept from the forward pass with
    ``keep_for_backward`` (:class:`KeepingSampleConv`).

    Without autograd (inference, or nothing requiring a gradient) they are built and
    used once, with no graph. Under ``torch.compile`` they are kept.

    Returns:
        Tensor: (B, Cout, H', W'), a view of the conv's output taken here, outside
        the autograd function and no-grad mode: autograd refuses in-place changes (an
        in-place ReLU, ``+=``) of a view made inside either.
    """
    tensors = [x, bias, *feature_inputs, *kernel_inputs]
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)):
        with torch.no_grad():
            features = make_features(x, *feature_inputs)
            out = geometry.conv(features, synthesis.build(kernel_inputs)[0], bias)
    elif keep_for_backward or torch.compiler.is_compiling():
        # Compiled, the features are built by autograd outside: inductor (torch 2.13, CPU)
        # miscomputes the input gradient of FBM rebuilt under torch.func.vjp in a backward
        # (0.1-0.3 relative at some map sizes; outputs and parameter gradients right).
        features = make_features(x, *feature_inputs)
        out = KeepingSampleConv.apply(synthesis, geometry, features, bias, *kernel_inputs)
    else:
        out = RebuildingSampleConv.apply(
            make_features, synthesis, geometry, x, bias, *feature_inputs, *kernel_inputs
        )
    return geometry.per_sample(out, x.shape[0])
