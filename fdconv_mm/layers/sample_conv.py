"""Per-sample convolution: each sample of a batch convolved with its own kernel.

The ``B`` samples run as one grouped ``conv2d`` (``groups=B``); it was faster here than
one conv per sample and than convolving the row-unfolded input with the kernels in
their ``irfft2`` layout (measured: 131 against 147 ms for a 512 -> 512 3x3 training step
on 13 x 19 maps). The kernels arrive as FDConv builds them, matrices ``(B, Cout*k,
Cin*k)`` laid out ``(co, i, ci, j)``, and are permuted to ``conv2d``'s ``(co, ci, i, j)``.

:class:`SampleConv` by default keeps neither the kernels nor the convolved features for
the backward pass: it saves their inputs and rebuilds them there (activation
checkpointing). A network of FDConvs would otherwise hold, per layer until the backward
pass, several batch-sized kernels and FBM's bands of the input. With ``keep`` (FDConv's
``keep_for_backward``) it holds them instead and skips the rebuild: faster, more memory.
"""

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .frequency import kernel_to_matrix, matrix_to_kernel

Pair = Tuple[int, int]


@dataclass(frozen=True)
class SampleConvGeometry:
    """Kernel size, stride, zero padding and dilation of a per-sample conv.

    Args:
        kernel_size (int): ``k`` (square kernels).
        stride, padding, dilation (tuple[int, int]): As ``nn.Conv2d``'s.
    """

    kernel_size: int
    stride: Pair
    padding: Pair
    dilation: Pair

    def conv_weight(self, kernels: Tensor, batch: int) -> Tensor:
        """Kernel matrices (B or 1, Cout*k, Cin*k) -> grouped weight (B*Cout, Cin, k, k)."""
        rows, cols = kernels.shape[-2:]
        k = self.kernel_size
        kernels = matrix_to_kernel(kernels.expand(batch, rows, cols), k)
        if k == 1:
            return kernels.reshape(-1, *kernels.shape[-3:])
        # One copy per kernel row i: 2-4x faster here than one permuted copy (whose
        # innermost loop runs over only k elements), e.g. 1.5 against 5.4 ms at 512 -> 512.
        weight = kernels.new_empty(kernels.shape)
        for i in range(k):
            weight[..., i, :].copy_(kernels[..., i, :])
        return weight.view(-1, *weight.shape[-3:])

    def kernel_grad(self, grad_weight: Tensor, batch: int) -> Tensor:
        """Gradient of :meth:`conv_weight`'s output -> kernel matrices (B, Cout*k, Cin*k)."""
        return kernel_to_matrix(grad_weight.view(batch, -1, *grad_weight.shape[1:]))

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
        """The grouped conv's output (1, B*Cout, H', W') -> (B, Cout, H', W'), a view."""
        return out.view(batch, -1, *out.shape[-2:])

    def grouped_run(self, features: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
        """(B, Cin, H, W) with kernels (B or 1, Cout*k, Cin*k) -> (1, B*Cout, H', W')."""
        batch = features.shape[0]
        weight = self.conv_weight(kernels.to(features.dtype), batch)
        return self.grouped_conv(self.conv_input(features), weight, bias, batch)

    def grouped_conv(
        self, conv_input: Tensor, weight: Tensor, bias: Optional[Tensor], batch: int
    ) -> Tensor:
        """(1, B*Cin, H, W) and :meth:`conv_weight` (B*Cout, Cin, k, k) -> (1, B*Cout, H', W')."""
        if bias is not None:
            bias = bias.to(conv_input.dtype).repeat(batch)
        return F.conv2d(conv_input, weight, bias, self.stride, self.padding, self.dilation, batch)

    def run(self, features: Tensor, kernels: Tensor, bias: Optional[Tensor]) -> Tensor:
        """(B, Cin, H, W) with kernels (B or 1, Cout*k, Cin*k) -> (B, Cout, H', W')."""
        return self.per_sample(self.grouped_run(features, kernels, bias), features.shape[0])


def differentiable_conv_input(
    make_features: Callable[..., Tensor],
    geometry: SampleConvGeometry,
    feature_args: Sequence[Optional[Tensor]],
    needs_grad: Sequence[bool],
) -> Tuple[Tensor, Optional[Callable[[Tensor], Tuple[Tensor, ...]]], List[int]]:
    """The grouped conv's input ``geometry.conv_input(make_features(*feature_args))``, with
    its vector-Jacobian product in the arguments that need a gradient.

    ``torch.func.vjp`` differentiates it without grad mode (an autograd function's backward
    runs without it), and ``torch.compile`` traces it, where ``torch.autograd.grad`` would
    break the graph.

    Returns:
        tuple: The conv input (1, B*Cin, H, W); the vjp (None if no argument needs a
        gradient), which maps the conv input's gradient to those arguments' gradients; and
        their indices in ``feature_args``.
    """
    wanted = [
        i for i, (t, need) in enumerate(zip(feature_args, needs_grad)) if t is not None and need
    ]

    def conv_input_of(*differentiable: Tensor) -> Tensor:
        args = list(feature_args)
        for index, tensor in zip(wanted, differentiable):
            args[index] = tensor
        return geometry.conv_input(make_features(*args))

    if not wanted:
        return conv_input_of(), None, wanted
    conv_input, vjp = torch.func.vjp(conv_input_of, *[feature_args[i] for i in wanted])
    return conv_input, vjp, wanted


class SampleConv(torch.autograd.Function):
    """Per-sample conv whose backward pass rebuilds its input features and kernels, or,
    with ``keep``, uses the ones of the forward pass.

    ``apply(make_features, synthesis, geometry, split, keep, x, bias, *inputs)`` returns
    ``geometry.grouped_run(make_features(x, *inputs[:split]),
    synthesis.build(*inputs[split:])[0], bias)``, (1, B*Cout, H', W'). It saves ``x``,
    ``bias`` and ``inputs``; without ``keep``, neither the features (e.g. FBM's output and
    its bands) nor the kernels: the backward pass rebuilds the features under the autocast
    state of the forward pass (as ``torch.utils.checkpoint`` does), differentiated by
    :func:`differentiable_conv_input`, and the kernels with ``synthesis.build``, whose
    ``synthesis.backward`` back-propagates into the kernel inputs (see
    :class:`~.kernel_synthesis.KernelSynthesis`).

    With ``keep``, ``x`` is the features themselves, built by autograd outside (which keeps
    what FBM's backward needs), ``split`` is 0, and the kernels (the conv weight and the
    synthesis cache) are held from the forward pass to the backward pass, which then runs
    once: ``retain_graph`` needs the rebuilding mode.
    """

    @staticmethod
    def forward(
        ctx: Any,
        make_features: Callable[..., Tensor],
        synthesis: Any,
        geometry: SampleConvGeometry,
        split: int,
        keep: bool,
        x: Tensor,
        bias: Optional[Tensor],
        *inputs: Optional[Tensor],
    ) -> Tensor:
        device = x.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        ctx.functions = (make_features, synthesis, geometry, split)
        ctx.save_for_backward(x, bias, *inputs)
        ctx.keep, ctx.kept = keep, None
        if not keep:
            features = make_features(x, *inputs[:split])
            kernels, _ = synthesis.build(*inputs[split:])
            return geometry.grouped_run(features, kernels, bias)
        # keep: x holds the features already (see sample_conv), and no feature inputs.
        kernels, cache = synthesis.build(*inputs, keep=any(ctx.needs_input_grad[7:]))
        weight = geometry.conv_weight(kernels.to(x.dtype), x.shape[0])
        del kernels
        ctx.kept = (weight, cache)
        return geometry.grouped_conv(geometry.conv_input(x), weight, bias, x.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, bias, *inputs = ctx.saved_tensors
        make_features, synthesis, geometry, split = ctx.functions
        needs_x, needs_bias = ctx.needs_input_grad[5:7]
        needs_features = ctx.needs_input_grad[7 : 7 + split]
        needs_kernels = ctx.needs_input_grad[7 + split :]
        batch, kernel_inputs = x.shape[0], inputs[split:]
        if ctx.keep:
            if ctx.kept is None:
                raise RuntimeError(
                    'FDConv(keep_for_backward=True) runs one backward pass per forward pass; '
                    'for retain_graph=True use keep_for_backward=False'
                )
            weight, cache = ctx.kept
            ctx.kept = None  # synthesis.backward overwrites the cache
            conv_input, wanted = geometry.conv_input(x), [0] if needs_x else []

            def conv_input_vjp(grad: Tensor) -> Tuple[Tensor]:
                return (grad.view_as(x),)

        else:
            device, autocast, autocast_dtype = ctx.autocast
            with torch.autocast(device, autocast_dtype, enabled=autocast):
                conv_input, conv_input_vjp, wanted = differentiable_conv_input(
                    make_features, geometry, [x, *inputs[:split]], [needs_x, *needs_features]
                )
            kernels, cache = synthesis.build(*kernel_inputs, keep=any(needs_kernels))
            weight = geometry.conv_weight(kernels.to(conv_input.dtype), batch)
            del kernels
        grad_input, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad_output.reshape(1, -1, *grad_output.shape[-2:]).to(conv_input.dtype),
            conv_input,
            weight,
            None if bias is None else [bias.numel() * batch],
            geometry.stride,
            geometry.padding,
            geometry.dilation,
            False,
            [0, 0],
            batch,
            [bool(wanted), any(needs_kernels), needs_bias],
        )
        del weight
        kernel_grads = [None] * len(kernel_inputs)
        if any(needs_kernels):
            grad_kernels = geometry.kernel_grad(grad_weight, batch)
            del grad_weight
            kernel_grads = synthesis.backward(kernel_inputs, cache, grad_kernels, needs_kernels)
        feature_grads = [None] * (1 + split)
        if wanted:
            for index, grad in zip(wanted, conv_input_vjp(grad_input)):
                feature_grads[index] = grad
        if needs_bias:
            grad_bias = grad_bias.view(batch, -1).sum(0).to(bias.dtype)
        return (
            None,
            None,
            None,
            None,
            None,
            feature_grads[0],
            grad_bias if needs_bias else None,
            *feature_grads[1:],
            *kernel_grads,
        )


def sample_conv(
    make_features: Callable[..., Tensor],
    synthesis: Any,
    geometry: SampleConvGeometry,
    x: Tensor,
    bias: Optional[Tensor],
    feature_inputs: Sequence[Optional[Tensor]],
    kernel_inputs: Sequence[Optional[Tensor]],
    keep_for_backward: bool = False,
) -> Tensor:
    """Per-sample conv of ``make_features(x, *feature_inputs)`` with the kernels
    ``synthesis.build(*kernel_inputs)``, both rebuilt for the backward pass, or kept from
    the forward pass with ``keep_for_backward`` (:class:`SampleConv`).

    Without autograd (inference, or nothing requiring a gradient) they are built and
    used once, with no graph.

    Returns:
        Tensor: (B, Cout, H', W'), a view of the grouped conv's output taken here, outside
        the autograd function and no-grad mode: autograd refuses in-place changes (an
        in-place ReLU, ``+=``) of a view made inside either.
    """
    tensors = [x, bias, *feature_inputs, *kernel_inputs]
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)):
        with torch.no_grad():
            features = make_features(x, *feature_inputs)
            out = geometry.grouped_run(features, synthesis.build(*kernel_inputs)[0], bias)
    elif keep_for_backward:
        features = make_features(x, *feature_inputs)
        out = SampleConv.apply(None, synthesis, geometry, 0, True, features, bias, *kernel_inputs)
    else:
        out = SampleConv.apply(
            make_features,
            synthesis,
            geometry,
            len(feature_inputs),
            False,
            x,
            bias,
            *feature_inputs,
            *kernel_inputs,
        )
    return geometry.per_sample(out, x.shape[0])
